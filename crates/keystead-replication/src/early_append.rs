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
//! uncommitted, and Raft treats it like any entry of a leader that failed (the simulation makes
//! that happen several times a seed and checks every acknowledged write, `docs/simulation.md`). The one thing this
//! relies on beyond Raft is that a restarted leader never leads the same term again (it would
//! then append a *different* entry under the same log id): `LogStore::read_vote` hands openraft
//! the saved vote uncommitted, so a restarted node leads again only after an election, which
//! takes a new term.
//!
//! The answer to an early append is not used for anything but counting: a follower that lags
//! (its log does not reach the previous entry) refuses it, and openraft's replication brings it
//! up to date as before. At most one early append is in flight per follower; while one is still
//! busy with the last one, the next entry goes to none of them (see [`EarlyAppend::send`]), so
//! under load this adds no queue.

use crate::types::{Entry, LogId, NodeInfo, Raft, TypeConfig, Vote};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

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

impl EarlyOutcome {
    /// What an append-entries answer (or the failure to get one) means for an early append.
    pub fn of_answer<E>(
        answer: Result<Result<AppendEntriesResponse<u64>, RaftError<u64>>, E>,
    ) -> Self {
        match answer {
            Ok(Ok(AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_))) => {
                EarlyOutcome::Accepted
            }
            Ok(Ok(_)) => EarlyOutcome::Refused,
            Ok(Err(_)) | Err(_) => EarlyOutcome::Failed,
        }
    }
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
    /// Not sent: a follower was still busy with the previous one (counted per follower left
    /// out, see [`EarlyAppend::send`]).
    pub skipped: u64,
}

/// A member whose early append failed gets none for this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Peers {
    /// Members with an early append in flight.
    busy: HashSet<u64>,
    /// When a member's last early append failed, if it did.
    failed_at: HashMap<u64, Instant>,
}

/// The other members to send to: from Raft's membership once Raft runs.
type Members = Box<dyn Fn() -> Vec<(u64, NodeInfo)> + Send + Sync>;

/// This node's early appends, as leader. Attached to the log store before Raft starts, and to
/// Raft (for the membership) once it has.
pub struct EarlyAppend {
    id: u64,
    members: OnceLock<Members>,
    sender: Arc<dyn EarlySender>,
    peers: Mutex<Peers>,
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
            peers: Mutex::new(Peers::default()),
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

    /// Sends `entries`, which follow `prev_log_id` in this leader's log, to every other member,
    /// or to none if one is still busy with the previous early append. Returns at once, and
    /// whether anything was sent; the sends run on their own tasks, which the caller should let
    /// start before its fsync (a yield). The caller has checked [`EarlyAppend::leads_for`].
    ///
    /// All or none, and all promptly, because followers whose logs end differently cost a
    /// failover time: if the leader dies while only one follower holds its last entry and the
    /// other times out first, the other's election fails (its log is shorter) and a second
    /// round is needed. A member whose last early append failed (down, unreachable) is left
    /// out of that rule and of the sends for [`RETRY_AFTER_FAILURE`].
    pub(crate) fn send(
        self: &Arc<Self>,
        vote: Vote,
        prev_log_id: LogId,
        entries: Vec<Entry>,
    ) -> bool {
        let Some(members) = self.members.get() else {
            return false;
        };
        let members = members();
        let now = Instant::now();
        let targets: Vec<(u64, NodeInfo)> = {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            let targets: Vec<(u64, NodeInfo)> = members
                .into_iter()
                .filter(|(id, _)| {
                    peers
                        .failed_at
                        .get(id)
                        .is_none_or(|at| now.duration_since(*at) >= RETRY_AFTER_FAILURE)
                })
                .collect();
            if targets.iter().any(|(id, _)| peers.busy.contains(id)) {
                self.skipped
                    .fetch_add(targets.len() as u64, Ordering::Relaxed);
                return false;
            }
            peers.busy.extend(targets.iter().map(|(id, _)| *id));
            targets
        };
        let sent = !targets.is_empty();
        for (target, node) in targets {
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
                let mut peers = this.peers.lock().unwrap_or_else(PoisonError::into_inner);
                peers.busy.remove(&target);
                match outcome {
                    EarlyOutcome::Failed => peers.failed_at.insert(target, Instant::now()),
                    _ => peers.failed_at.remove(&target),
                };
            });
        }
        sent
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

    /// Answers "n2" only when released, fails "n4" at once, accepts the rest at once.
    struct Scripted {
        release: Arc<tokio::sync::Notify>,
        sent: Mutex<Vec<String>>,
    }

    impl EarlySender for Scripted {
        fn send(&self, node: &NodeInfo, _: AppendEntriesRequest<TypeConfig>) -> EarlySend {
            self.sent.lock().unwrap().push(node.addr.clone());
            let release = self.release.clone();
            match node.addr.as_str() {
                "n2" => Box::pin(async move {
                    release.notified().await;
                    EarlyOutcome::Accepted
                }),
                "n4" => Box::pin(async { EarlyOutcome::Failed }),
                _ => Box::pin(async { EarlyOutcome::Accepted }),
            }
        }
    }

    fn member(id: u64) -> (u64, NodeInfo) {
        let node = NodeInfo {
            addr: format!("n{id}"),
            ..Default::default()
        };
        (id, node)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn all_healthy_followers_or_none_and_a_failed_one_is_left_out_for_a_while() {
        let sender = Arc::new(Scripted {
            release: Arc::new(tokio::sync::Notify::new()),
            sent: Mutex::new(Vec::new()),
        });
        let early = EarlyAppend::new(1, sender.clone());
        early.attach_members(Box::new(|| vec![member(2), member(3), member(4)]));
        let vote = Vote::new_committed(3, 1);
        let prev = LogId::new(CommittedLeaderId::new(3, 1), 6);
        let sent = |sender: &Scripted| {
            let mut sent = std::mem::take(&mut *sender.sent.lock().unwrap());
            sent.sort();
            sent
        };

        // First entry: all three; n4 fails, n3 answers, n2 is still busy.
        assert!(early.send(vote, prev, vec![entry(3, 1, 7)]));
        settle().await;
        assert_eq!(sent(&sender), ["n2", "n3", "n4"]);
        // Second: n2 busy, so none of the healthy ones; n4 failed, so it is left out.
        assert!(!early.send(vote, prev, vec![entry(3, 1, 8)]));
        assert!(sent(&sender).is_empty());
        assert_eq!(early.counts().skipped, 2);
        // n2 answers: the next goes to n2 and n3, still not to n4.
        sender.release.notify_one();
        settle().await;
        assert!(early.send(vote, prev, vec![entry(3, 1, 9)]));
        settle().await;
        assert_eq!(sent(&sender), ["n2", "n3"]);
        assert_eq!(early.counts().failed, 1);
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
