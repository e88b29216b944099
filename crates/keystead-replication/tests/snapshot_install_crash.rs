//! A follower that crashes while installing a snapshot must be able to restart. openraft 0.9
//! asks for the purge of the log a snapshot covers right after handing the snapshot to the
//! state machine, without waiting for the install; found by the simulation test (`tests/sim`),
//! where such nodes then failed openraft's startup check (purged log past the state machine)
//! and could not rejoin. Replayed here step by step on the crashable disk.

use keystead_replication::types::{Entry, LogId};
use keystead_replication::{LogStore, StateMachine};
use keystead_store::sim_disk::SimDisk;
use keystead_store::Store;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{blank_ent, log_id};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use std::sync::Arc;

fn open(disk: &SimDisk) -> (LogStore, StateMachine) {
    let store = Arc::new(Store::open_on(disk.backend()).expect("open the store"));
    (LogStore::new(store.clone()), StateMachine::new(store))
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| blank_ent(1, 1, i)).collect()
}

/// Appends entries the way `LogStore::append` commits them (durably), without openraft's
/// flush callback, which only openraft can make.
fn append(store: &Store, entries: &[Entry]) {
    let rows: Vec<(u64, Vec<u8>)> = entries
        .iter()
        .map(|e| (e.log_id.index, serde_json::to_vec(e).expect("encode")))
        .collect();
    store.raft_log_append(&rows).expect("append");
}

/// What openraft's startup requires: the log is not purged past the state machine, and every
/// entry after the state machine's position is still in the log.
async fn assert_restartable(log: &mut LogStore, sm: &mut StateMachine) -> Option<LogId> {
    let state = log.get_log_state().await.expect("log state");
    let (applied, _) = sm.applied_state().await.expect("applied state");
    assert!(
        state.last_purged_log_id <= applied,
        "log purged to {:?} past the state machine at {:?}",
        state.last_purged_log_id,
        applied
    );
    let from = applied.map_or(0, |id| id.index + 1);
    let to = state.last_log_id.map_or(0, |id| id.index + 1);
    let read = log
        .try_get_log_entries(from..to)
        .await
        .expect("read the log");
    assert_eq!(
        read.len() as u64,
        to.saturating_sub(from),
        "a hole in the log"
    );
    applied
}

#[tokio::test]
async fn a_crash_between_the_purge_and_the_install_leaves_a_node_that_can_restart() {
    // A leader's snapshot at 25.
    let leader_disk = SimDisk::new();
    let (_, mut leader_sm) = open(&leader_disk);
    leader_sm.apply(entries(0..=25)).await.expect("apply");
    let snapshot = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 25)));

    // A follower that has the log to 30 but applied only to 10.
    let disk = SimDisk::new();
    let store = Arc::new(Store::open_on(disk.backend()).expect("open"));
    append(&store, &entries(0..=30));
    let (mut log, mut sm) = (LogStore::new(store.clone()), StateMachine::new(store));
    sm.apply(entries(0..=10)).await.expect("apply");

    // openraft purges to 25 before the install has run: nothing past 10 may go.
    log.purge(log_id(1, 1, 25)).await.expect("purge");
    assert_restartable(&mut log, &mut sm).await;

    // The power fails before the install: the node comes back as it was before the snapshot.
    disk.power_loss();
    drop((log, sm));
    let (mut log, mut sm) = open(&disk);
    assert_restartable(&mut log, &mut sm).await;

    // Installing it purges the log it covers in the same commit, and that survives a crash.
    let snapshot = leader_sm
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("a snapshot");
    sm.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    disk.power_loss();
    drop((log, sm));
    let (mut log, mut sm) = open(&disk);
    let applied = assert_restartable(&mut log, &mut sm).await;
    assert_eq!(applied, Some(log_id(1, 1, 25)));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 25)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 30)));

    // openraft's own purge of the same point, after the install, changes nothing.
    log.purge(log_id(1, 1, 25)).await.expect("purge");
    assert_eq!(assert_restartable(&mut log, &mut sm).await, applied);
}
