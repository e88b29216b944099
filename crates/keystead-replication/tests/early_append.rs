//! The log store's early appends (`early_append.rs`): what the leader sends, to whom, and when it
//! sends nothing. The requests must be exactly the ones openraft's replication would send a
//! moment later (same vote, the previous entry's log id as this log holds it, no commit
//! position), or a follower would refuse them, or worse, take entries on a wrong previous one.

use keystead_replication::early_append::{EarlyAppend, EarlyOutcome, EarlySend, EarlySender};
use keystead_replication::types::{Entry, LogId, Vote};
use keystead_replication::{open_log_file, LogStore, NodeInfo, TypeConfig};
use keystead_store::Store;
use openraft::raft::AppendEntriesRequest;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, AppendEntriesRequest<TypeConfig>)>>);

impl EarlySender for Recorder {
    fn send(&self, node: &NodeInfo, request: AppendEntriesRequest<TypeConfig>) -> EarlySend {
        self.0
            .lock()
            .expect("recorder lock")
            .push((node.addr.clone(), request));
        Box::pin(async { EarlyOutcome::Accepted })
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, AppendEntriesRequest<TypeConfig>)> {
        std::mem::take(&mut *self.0.lock().expect("recorder lock"))
    }
}

fn node(addr: &str) -> NodeInfo {
    NodeInfo {
        addr: addr.into(),
        ..Default::default()
    }
}

fn entry(term: u64, leader: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, leader, index),
        payload: EntryPayload::Blank,
    }
}

fn log_id(term: u64, leader: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, leader), index)
}

/// Lets the spawned sends run and finish (they answer at once).
async fn settle(early: &EarlyAppend, accepted: u64) {
    for _ in 0..100 {
        if early.counts().accepted >= accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("early appends not done: {:?}", early.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_sends_each_new_entry_on_its_previous_one_to_every_other_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("keystead.redb")).expect("store"));
    let log = open_log_file(dir.path(), &store).expect("log file");
    let recorder = Arc::new(Recorder::default());
    let early = EarlyAppend::new(1, recorder.clone());
    early.attach_members(Box::new(|| vec![(2, node("n2")), (3, node("n3"))]));
    let mut store = LogStore::open(log, store)
        .expect("log store")
        .with_early_append(early.clone());

    // Following node 2: its entries are not ours to send.
    store.save_vote(&Vote::new_committed(1, 2)).await.unwrap();
    store.blocking_append([entry(1, 2, 0)]).await.unwrap();
    store.blocking_append([entry(1, 2, 1)]).await.unwrap();
    // A candidate, not yet granted leadership, sends nothing either.
    store.save_vote(&Vote::new(2, 1)).await.unwrap();
    store.blocking_append([entry(1, 2, 2)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(recorder.take().is_empty());

    // Leading: each append goes to both other members, on the previous entry as the log holds
    // it (the last one of the previous leader, then our own), with no commit position.
    let vote = Vote::new_committed(2, 1);
    store.save_vote(&vote).await.unwrap();
    store.blocking_append([entry(2, 1, 3)]).await.unwrap();
    settle(&early, 2).await;
    store
        .blocking_append([entry(2, 1, 4), entry(2, 1, 5)])
        .await
        .unwrap();
    settle(&early, 4).await;
    let mut sent = recorder.take();
    sent.sort_by_key(|(addr, r)| (r.entries[0].log_id.index, addr.clone()));
    let summary: Vec<(String, Option<LogId>, Vec<u64>)> = sent
        .iter()
        .map(|(addr, r)| {
            assert_eq!(r.vote, vote);
            assert_eq!(r.leader_commit, None);
            let indexes = r.entries.iter().map(|e| e.log_id.index).collect();
            (addr.clone(), r.prev_log_id, indexes)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("n2".into(), Some(log_id(1, 2, 2)), vec![3]),
            ("n3".into(), Some(log_id(1, 2, 2)), vec![3]),
            ("n2".into(), Some(log_id(2, 1, 3)), vec![4, 5]),
            ("n3".into(), Some(log_id(2, 1, 3)), vec![4, 5]),
        ]
    );

    // After a truncation the previous entry is the one the log now ends with.
    store.truncate(log_id(2, 1, 5)).await.unwrap();
    store.blocking_append([entry(2, 1, 5)]).await.unwrap();
    settle(&early, 6).await;
    let sent = recorder.take();
    assert_eq!(sent.len(), 2);
    assert!(sent
        .iter()
        .all(|(_, r)| r.prev_log_id == Some(log_id(2, 1, 4))));
    assert_eq!(early.counts().skipped, 0);
}
