//! A follower that crashes while installing a snapshot must be able to restart. openraft 0.9
//! asks for the purge of the log a snapshot covers right after handing the snapshot to the
//! state machine, without waiting for the install; found by the simulation test (`tests/sim`),
//! where such nodes then failed openraft's startup check (purged log past the state machine)
//! and could not rejoin. Replayed here step by step on the crashable disk.
//!
//! The install itself is two commits, since the state and the log live in two files: the state
//! first, then the log's purge. A crash at each of its syncs is replayed too, with a log that
//! agrees with the snapshot and with one from another leader's history.

use keystead_replication::types::{Entry, LogId};
use keystead_replication::{LogStore, StateMachine, TypeConfig};
use keystead_store::sim_disk::SimDisk;
use keystead_store::{RaftLogFile, Store};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{blank_ent, log_id};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use std::sync::Arc;

/// A node's files on its disk: the state and the Raft log.
fn open_files(disk: &SimDisk) -> (Arc<Store>, Arc<RaftLogFile>) {
    let [state, log] = disk.backends(["keystead.redb", "raft-log.redb"]);
    (
        Arc::new(Store::open_on(state).expect("open the store")),
        Arc::new(RaftLogFile::open_on(log).expect("open the log")),
    )
}

fn open(disk: &SimDisk) -> (LogStore, StateMachine) {
    let (store, log) = open_files(disk);
    (
        LogStore::open(log.clone(), store.clone()).expect("open the log store"),
        StateMachine::new(store, log),
    )
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    entries_of(1, range)
}

/// Entries of node 1 as the leader of `term`.
fn entries_of(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| blank_ent(term, 1, i)).collect()
}

/// Appends entries the way `LogStore::append` commits them (durably), without openraft's
/// flush callback, which only openraft can make.
fn append(log: &RaftLogFile, entries: &[Entry]) {
    let rows: Vec<(u64, Vec<u8>)> = entries
        .iter()
        .map(|e| (e.log_id.index, serde_json::to_vec(e).expect("encode")))
        .collect();
    log.append(&rows, &[]).expect("append");
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

/// A leader's state machine with a snapshot at 25.
async fn leader_with_a_snapshot() -> (SimDisk, StateMachine) {
    let leader_disk = SimDisk::new();
    let (_, mut leader_sm) = open(&leader_disk);
    leader_sm.apply(entries(0..=10)).await.expect("apply");
    leader_sm
        .apply(entries_of(3, 11..=25))
        .await
        .expect("apply");
    let snapshot = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(3, 1, 25)));
    (leader_disk, leader_sm)
}

async fn current_snapshot(leader_sm: &mut StateMachine) -> openraft::Snapshot<TypeConfig> {
    leader_sm
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("a snapshot")
}

/// Installs the leader's snapshot on `sm`.
async fn install_snapshot_of(leader_sm: &mut StateMachine, sm: &mut StateMachine) {
    let snapshot = current_snapshot(leader_sm).await;
    sm.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
}

/// A follower that has applied to 10 and holds the log to 30: the leader's entries, or from 11
/// on those of the leader of an earlier term (`other`), whose history the snapshot's replaced.
async fn follower(other: bool) -> (SimDisk, LogStore, StateMachine) {
    let disk = SimDisk::new();
    let (store, file) = open_files(&disk);
    append(&file, &entries(0..=10));
    append(&file, &entries_of(if other { 2 } else { 3 }, 11..=30));
    let log = LogStore::open(file.clone(), store.clone()).expect("open the log store");
    let mut sm = StateMachine::new(store.clone(), file);
    sm.apply(entries(0..=10)).await.expect("apply");
    store.sync_applied().expect("make the applies durable");
    (disk, log, sm)
}

#[tokio::test]
async fn a_crash_between_the_purge_and_the_install_leaves_a_node_that_can_restart() {
    let (_leader_disk, mut leader_sm) = leader_with_a_snapshot().await;
    let (disk, mut log, mut sm) = follower(false).await;

    // openraft purges to 25 before the install has run: nothing past 10 may go.
    log.purge(log_id(3, 1, 25)).await.expect("purge");
    assert_restartable(&mut log, &mut sm).await;

    // The power fails before the install: the node comes back as it was before the snapshot.
    disk.power_loss();
    drop((log, sm));
    let (mut log, mut sm) = open(&disk);
    assert_restartable(&mut log, &mut sm).await;

    // Installing it purges the log it covers, and that survives a crash.
    install_snapshot_of(&mut leader_sm, &mut sm).await;
    disk.power_loss();
    drop((log, sm));
    let (mut log, mut sm) = open(&disk);
    let applied = assert_restartable(&mut log, &mut sm).await;
    assert_eq!(applied, Some(log_id(3, 1, 25)));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(3, 1, 25)));
    assert_eq!(state.last_log_id, Some(log_id(3, 1, 30)));

    // openraft's own purge of the same point, after the install, changes nothing.
    log.purge(log_id(3, 1, 25)).await.expect("purge");
    assert_eq!(assert_restartable(&mut log, &mut sm).await, applied);
}

#[tokio::test]
async fn a_crash_at_any_sync_of_an_install_leaves_a_log_that_agrees_with_the_state() {
    let (_leader_disk, mut leader_sm) = leader_with_a_snapshot().await;
    for other_history in [false, true] {
        let mut completed = false;
        for sync in 1..10 {
            let (disk, log, mut sm) = follower(other_history).await;
            let snapshot = current_snapshot(&mut leader_sm).await;
            disk.arm_power_loss(sync, None);
            let installed = sm.install_snapshot(&snapshot.meta, snapshot.snapshot).await;
            let tripped = disk.tripped();
            assert_eq!(installed.is_err(), tripped, "sync {sync}");
            if !tripped {
                disk.power_loss();
            }
            drop((log, sm));

            let (mut log, mut sm) = open(&disk);
            let applied = assert_restartable(&mut log, &mut sm).await;
            assert!(
                applied == Some(log_id(1, 1, 10)) || applied == Some(log_id(3, 1, 25)),
                "other history: {other_history}, sync {sync}: applied {applied:?}"
            );
            // With the snapshot installed, the log holds nothing at or before its last entry
            // that disagrees with it; and a crash between the state's commit and the log's purge
            // leaves none of the earlier term's history at all (openraft truncates a conflicting
            // tail itself when the install completes).
            let state = log.get_log_state().await.expect("log state");
            let kept = log.try_get_log_entries(0..=30).await.expect("read the log");
            if applied == Some(log_id(3, 1, 25)) {
                assert!(
                    kept.iter()
                        .all(|e| e.log_id.index > 25 || e.log_id.leader_id.term != 2),
                    "other history: {other_history}, sync {sync}: {kept:?}"
                );
                assert!(state.last_purged_log_id >= Some(log_id(3, 1, 25)) || !other_history);
                if other_history && tripped {
                    assert!(kept.is_empty(), "sync {sync}: {kept:?}");
                }
            }
            if !tripped {
                completed = true;
                break;
            }
        }
        assert!(completed, "the install finished within the syncs tried");
    }
}

/// Early appends reach a follower whatever its replication is doing, and openraft counts a
/// snapshot's last entry as held as soon as it hands the snapshot to the state machine: so a
/// follower may append the entries that follow a snapshot before the snapshot's install has
/// committed, and write a committed-position hint with them. A crash before the install
/// commits leaves its log with a hole (its old entries, then the new ones) and a hint it does
/// not hold. Found by the simulation (a restarted leader sent entries from across the hole
/// under the wrong previous entry; openraft's follower asserted). The node must restart with
/// the hole cut off, and a leader must never send entries from across one.
#[tokio::test]
async fn entries_that_followed_an_uninstalled_snapshot_are_cut_off_at_restart() {
    let disk = SimDisk::new();
    let (store, file) = open_files(&disk);
    append(&file, &entries(0..=10));
    let mut sm = StateMachine::new(store.clone(), file.clone());
    sm.apply(entries(0..=8)).await.expect("apply");
    store.sync_applied().expect("make the applies durable");
    // The snapshot (to 25) is with the state machine, not yet installed, when an early append
    // brings 26 and 27, with the hint that 25 is committed.
    let hint = serde_json::to_vec(&Some(log_id(3, 1, 25))).expect("encode");
    let rows: Vec<(u64, Vec<u8>)> = entries_of(3, 26..=27)
        .iter()
        .map(|e| (e.log_id.index, serde_json::to_vec(e).expect("encode")))
        .collect();
    file.append(&rows, &[("committed", hint.as_slice())])
        .expect("append");

    disk.power_loss();
    drop((sm, store, file));
    let (mut log, mut sm) = open(&disk);
    let applied = assert_restartable(&mut log, &mut sm).await;
    assert_eq!(applied, Some(log_id(1, 1, 8)));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 10)), "cut at the hole");
    let committed = log.read_committed().await.expect("committed");
    assert!(
        committed.is_none_or(|c| c.index <= 10),
        "a hint past the log: {committed:?}"
    );
    let read = log.limited_get_log_entries(9, 11).await.expect("read");
    assert_eq!(read.len(), 2);
}

/// A replication read must give entries that begin where asked and have no hole: openraft
/// sends them as the entries after the one before. One that finds its first entry purged (a
/// node that has just stopped leading purges its log under its last replication read) gives
/// none; one that finds a hole gives what precedes it.
#[tokio::test]
async fn a_replication_read_never_gives_entries_from_across_a_hole() {
    let disk = SimDisk::new();
    let (store, file) = open_files(&disk);
    append(&file, &entries(0..=10));
    let mut log = LogStore::open(file.clone(), store).expect("open the log store");
    append(&file, &entries_of(3, 13..=14));
    let indexes = |read: Vec<Entry>| -> Vec<u64> { read.iter().map(|e| e.log_id.index).collect() };
    let read = log.limited_get_log_entries(11, 15).await.expect("read");
    assert_eq!(indexes(read), Vec::<u64>::new(), "11 is missing");
    let read = log.limited_get_log_entries(9, 15).await.expect("read");
    assert_eq!(indexes(read), vec![9, 10], "up to the hole");
    let read = log.limited_get_log_entries(13, 15).await.expect("read");
    assert_eq!(indexes(read), vec![13, 14]);
}

/// A new node (it has applied nothing) that gets its first snapshot: openraft asks for the log
/// to be purged before the install runs, and the purge has no applied position to stop at. A
/// crash before the install commits left a log purged past an empty state, which openraft
/// refuses to start from (found by the simulation). The node must restart with an empty log.
#[tokio::test]
async fn a_new_node_that_crashes_before_its_first_snapshot_is_installed_can_restart() {
    let (_leader_disk, mut leader_sm) = leader_with_a_snapshot().await;
    let disk = SimDisk::new();
    let (store, file) = open_files(&disk);
    append(&file, &entries(0..=7));
    let mut log = LogStore::open(file.clone(), store.clone()).expect("open the log store");
    log.purge(log_id(3, 1, 25)).await.expect("purge");
    disk.power_loss();
    drop((log, store, file));

    let (mut log, mut sm) = open(&disk);
    assert_eq!(assert_restartable(&mut log, &mut sm).await, None);
    let state = log.get_log_state().await.expect("log state");
    assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));

    // The snapshot installs as on any new node.
    install_snapshot_of(&mut leader_sm, &mut sm).await;
    disk.power_loss();
    drop((log, sm));
    let (mut log, mut sm) = open(&disk);
    assert_eq!(
        assert_restartable(&mut log, &mut sm).await,
        Some(log_id(3, 1, 25))
    );
}
