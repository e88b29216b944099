//! Early appends: the leader sends its new entries to the followers as its log store starts
//! writing them, so that the followers' fsyncs run while the leader's own does (Raft thesis
//! §10.2.1, "the leader may write to its disk in parallel with replicating to followers").
//!
//! Why: openraft 0.9 replicates an entry only once the leader's own log append is durable
//! (`RaftCore::append_to_log` waits for the flush), so a lone write waits for two fsyncs in a
//! row, the leader's and then a follower's, each about 300 µs on the bench machine's disk. With
//! an early append the follower's fsync overlaps the leader's, and openraft's own replication,
//! sent after the leader's fsync, finds the entry already on the follower and is answered
//! without another fsync.
//!
//! Why it is safe: an early append is an ordinary append-entries request of the leader's term,
//! the same one openraft would send a moment later: the leader's committed vote, the log id of
//! the entry before the new ones as the leader's own log holds it, the new entries, and no
//! commit position (so it commits nothing on the follower). The follower checks it exactly as
//! any other (vote, then log continuity, then conflicts), and Raft already allows such requests
//! to arrive late, twice or out of order. The leader still counts itself towards a commit only
//! once its own append is durable: openraft's flush callback is untouched. What is new is that
//! a follower may hold an entry the leader lost in a crash before its fsync; that entry is
//! uncommitted, and Raft treats it like any entry of a leader that failed. The one thing this
//! relies on beyond Raft is that a restarted leader never leads the same term again (it would
//! then append a *different* entry under the same log id): `LogStore::read_vote` hands openraft
//! the saved vote uncommitted, so a restarted node leads again only after an election, which
//! takes a new term.
//!
//! The answer to an early append is not used for anything but counting: a follower that lags
//! (its log does not reach the previous entry) refuses it, and openraft's replication brings it
//! up to date as before. At most one early append is in flight per follower; a follower still
//! busy with the last one is skipped, so under load this adds no queue.

use crate::types::{Entry, LogId, NodeInfo, Raft, TypeConfig, Vote};
use openraft::raft::AppendEntriesRequest;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// What sending one early append to a node came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyOutcome {
    /// The follower appended the entries (or held them already).
    Accepted,
    /// The follower refused them: a higher vote, or a log that does not reach the previous
    /// entry.
    Refused,
    /// No answer: the node is unreachable, or the call failed.
    Failed,
}

pub type EarlySend = Pin<Box<dyn Future<Output = EarlyOutcome> + Send>>;

/// How early appends reach a node: the node transport in production, the simulation's
/// transport in its tests.
pub trait EarlySender: Send + Sync + 'static {
    fn send(&self, node: &NodeInfo, request: AppendEntriesRequest<TypeConfig>) -> EarlySend;
}

/// Counts of early appends, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EarlyCounts {
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
    /// Not sent: the follower was still busy with the previous one.
    pub skipped: u64,
}

/// The other members to send to: from Raft's membership once Raft runs.
type Members = Box<dyn Fn() -> Vec<(u64, NodeInfo)> + Send + Sync>;

/// This node's early appends, as leader. Attached to the log store before Raft starts, and to
/// Raft (for the membership) once it has.
pub struct EarlyAppend {
    id: u64,
    members: OnceLock<Members>,
    sender: Arc<dyn EarlySender>,
    /// Followers with an early append in flight.
    busy: Mutex<HashSet<u64>>,
    accepted: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

impl EarlyAppend {
    pub fn new(id: u64, sender: Arc<dyn EarlySender>) -> Arc<EarlyAppend> {
        Arc::new(EarlyAppend {
            id,
            members: OnceLock::new(),
            sender,
            busy: Mutex::new(HashSet::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }

    /// Gives the membership's source once Raft has started; until then nothing is sent.
    pub fn attach(&self, raft: Raft) {
        let id = self.id;
        self.attach_members(Box::new(move || {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(node_id, _)| **node_id != id)
                .map(|(node_id, node)| (*node_id, node.clone()))
                .collect()
        }));
    }

    /// [`EarlyAppend::attach`] with any source of the other members (tests).
    pub fn attach_members(&self, members: Members) {
        let _ = self.members.set(members);
    }

    pub fn counts(&self) -> EarlyCounts {
        EarlyCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// Whether entries appended under `vote` are this node's own, as leader: the vote is
    /// committed (granted by a quorum), names this node, and every entry was made in its term.
    /// A follower's appends (another leader's entries) never are.
    pub(crate) fn leads_for(&self, vote: &Vote, entries: &[Entry]) -> bool {
        vote.is_committed()
            && vote.leader_id().voted_for() == Some(self.id)
            && !entries.is_empty()
            && entries
                .iter()
                .all(|e| e.log_id.leader_id == *vote.leader_id())
    }

    /// Sends `entries`, which follow `prev_log_id` in this leader's log, to every other member
    /// not still busy with the previous early append. Returns at once; the sends run on their
    /// own tasks. The caller has checked [`EarlyAppend::leads_for`].
    pub(crate) fn send(self: &Arc<Self>, vote: Vote, prev_log_id: LogId, entries: Vec<Entry>) {
        let Some(members) = self.members.get() else {
            return;
        };
        for (target, node) in members() {
            let claimed = self
                .busy
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(target);
            if !claimed {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let request = AppendEntriesRequest {
                vote,
                prev_log_id: Some(prev_log_id),
                entries: entries.clone(),
                // Commits nothing: the leader has not counted this entry anywhere yet.
                leader_commit: None,
            };
            let this = self.clone();
            tokio::spawn(async move {
                let outcome = this.sender.send(&node, request).await;
                let counter = match outcome {
                    EarlyOutcome::Accepted => &this.accepted,
                    EarlyOutcome::Refused => &this.refused,
                    EarlyOutcome::Failed => &this.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                this.busy
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&target);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    struct Nowhere;

    impl EarlySender for Nowhere {
        fn send(&self, _: &NodeInfo, _: AppendEntriesRequest<TypeConfig>) -> EarlySend {
            Box::pin(async { EarlyOutcome::Failed })
        }
    }

    fn entry(term: u64, node: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, node), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn only_a_committed_leaders_own_entries_are_sent_early() {
        let early = EarlyAppend::new(1, Arc::new(Nowhere));
        let leading = Vote::new_committed(3, 1);
        assert!(early.leads_for(&leading, &[entry(3, 1, 7), entry(3, 1, 8)]));
        // A candidate (vote not yet granted by a quorum) sends nothing.
        assert!(!early.leads_for(&Vote::new(3, 1), &[entry(3, 1, 7)]));
        // Following another leader: its entries are not this node's to send.
        assert!(!early.leads_for(&Vote::new_committed(3, 2), &[entry(3, 2, 7)]));
        // Entries of an earlier term of this node (replicated to it by a later leader).
        assert!(!early.leads_for(&leading, &[entry(2, 1, 7)]));
        assert!(!early.leads_for(&leading, &[entry(3, 1, 7), entry(2, 1, 8)]));
        assert!(!early.leads_for(&leading, &[]));
    }
}
