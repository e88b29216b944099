//! Leader lease reads: the leader answers a read index without a heartbeat round while a
//! quorum's promise not to elect anyone else still holds.
//!
//! openraft 0.9 followers keep a lease: once a follower has accepted an append-entries from the
//! leader of vote `V` (its own vote is then `V`, committed), it refuses every vote request for
//! `election_timeout_max` after it processed that message, and after a restart it counts the
//! lease from process start (`openraft::engine::Engine::handle_vote_req`,
//! `storage::helper::get_initial_state`). A new leader needs a majority of votes. So if, at
//! some instant `t`:
//!
//! 1. this node is leader with vote `V` (checked inside Raft's core, `Raft::with_raft_state`,
//!    so it has granted no higher vote up to `t`), and
//! 2. enough followers acknowledged an append-entries of vote `V` sent at `s_i` with
//!    `t < s_i + lease`, that they and this node form a majority of every voter configuration,
//!
//! then no other leader exists at `t`: any majority that could have elected one contains this
//! node or one of those followers, and none of them granted a vote. Every write acknowledged
//! before the read arrived was therefore committed by this leader or before it, and is at or
//! below this leader's committed log id, provided that id is of this leader's term (its first,
//! blank entry committed; before that the lease is not used). That log id is the read index:
//! the reader waits until its node has applied it, exactly as after a heartbeat round. This
//! needs the committed log id to be one this leader learned while leading in this process: a
//! leader restored at start-up would begin from a lagging hint, which is why a restarted node
//! never resumes its term (`LogStore::read_vote`) and is elected anew.
//!
//! A follower's acknowledgement also proves it had granted no higher vote before answering
//! (it would have answered `HigherVote`), so an acknowledgement that arrives after `t` still
//! covers `t`.
//!
//! Clocks: `s_i` is read on the leader before the request is sent; the follower starts its
//! lease when it processes the message, later. On one host every node reads the same monotonic
//! clock; across hosts, [`LEASE_SHARE`] leaves room for clock rate differences. All nodes must
//! run with the same `election_timeout_max`.
//!
//! During a joint membership change the majority must hold in both voter sets. When the lease
//! does not hold (too few recent acknowledgements, the term's first entry not yet committed,
//! this node not leading), the caller falls back to openraft's heartbeat round
//! (`Raft::ensure_linearizable`).

use crate::types::{LogId, Raft, Vote};
use openraft::ServerState;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The share of `election_timeout_max` the leader counts on: the rest is the margin for clock
/// rate differences between hosts.
pub const LEASE_SHARE: f64 = 0.8;

/// A follower's latest acknowledgement of this node's leadership.
#[derive(Clone, Debug)]
struct Ack {
    vote: Vote,
    /// When the acknowledged append-entries was sent (before it left this node).
    sent: Instant,
}

/// What the Raft core says about this node, read inside the core in one step.
struct CoreView {
    leading: bool,
    vote: Vote,
    committed: Option<LogId>,
    voter_sets: Vec<BTreeSet<u64>>,
}

pub struct LeaderLease {
    me: u64,
    /// How long after an acknowledged send this node still counts on the follower's lease.
    lease: Duration,
    enabled: bool,
    acks: Mutex<HashMap<u64, Ack>>,
    served: AtomicU64,
    declined: AtomicU64,
}

impl LeaderLease {
    /// `election_timeout_max`: the followers' lease, as configured on every node.
    pub fn new(me: u64, election_timeout_max: Duration, enabled: bool) -> LeaderLease {
        LeaderLease {
            me,
            lease: election_timeout_max.mul_f64(LEASE_SHARE),
            enabled,
            acks: Mutex::new(HashMap::new()),
            served: AtomicU64::new(0),
            declined: AtomicU64::new(0),
        }
    }

    /// Records that `target` accepted an append-entries of `vote` sent at `sent` (any answer but
    /// `HigherVote`: success, partial success and conflict all come after the follower took the
    /// vote). Keeps the latest send per follower. Called by the transport (`network.rs`, and
    /// the simulation's).
    pub fn acknowledged(&self, target: u64, vote: &Vote, sent: Instant) {
        let Ok(mut acks) = self.acks.lock() else {
            return;
        };
        match acks.get_mut(&target) {
            Some(ack) if &ack.vote == vote => ack.sent = ack.sent.max(sent),
            _ => {
                acks.insert(target, Ack { vote: *vote, sent });
            }
        }
    }

    /// The read index, if this node leads and the lease holds; `None` means: take a heartbeat
    /// round instead.
    pub(crate) async fn read_index(&self, raft: &Raft) -> Option<LogId> {
        if !self.enabled {
            // Counted all the same: `cluster status` then shows every round as a heartbeat's.
            self.declined.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let view = raft
            .with_raft_state(|state| CoreView {
                leading: state.server_state == ServerState::Leader,
                vote: *state.vote_ref(),
                committed: state.committed,
                voter_sets: state
                    .membership_state
                    .effective()
                    .membership()
                    .get_joint_config()
                    .clone(),
            })
            .await
            .ok()?;
        // Taken after the core answered: later is the safe side.
        let now = Instant::now();
        let index = self.check(&view, now);
        let counter = if index.is_some() {
            &self.served
        } else {
            &self.declined
        };
        counter.fetch_add(1, Ordering::Relaxed);
        index
    }

    fn check(&self, view: &CoreView, now: Instant) -> Option<LogId> {
        let vote = &view.vote;
        if !view.leading || !vote.is_committed() || vote.leader_id().voted_for() != Some(self.me) {
            return None;
        }
        // A committed entry of this term: the term's blank entry is committed, so everything
        // earlier leaders committed is at or below it.
        let committed = view.committed?;
        if committed.leader_id.term != vote.leader_id().get_term() {
            return None;
        }
        let acks = self.acks.lock().ok()?;
        let holds = lease_holds(self.me, vote, &view.voter_sets, &acks, now, self.lease);
        holds.then_some(committed)
    }

    /// How many read indexes the lease answered, and how many it sent to a heartbeat round.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.declined.load(Ordering::Relaxed),
        )
    }
}

/// Whether, in every voter configuration, `me` and the followers whose lease for `vote` still
/// runs at `now` are a majority.
fn lease_holds(
    me: u64,
    vote: &Vote,
    voter_sets: &[BTreeSet<u64>],
    acks: &HashMap<u64, Ack>,
    now: Instant,
    lease: Duration,
) -> bool {
    !voter_sets.is_empty()
        && voter_sets.iter().all(|voters| {
            let holding = voters
                .iter()
                .filter(|id| {
                    **id == me
                        || acks
                            .get(id)
                            .is_some_and(|ack| &ack.vote == vote && now < ack.sent + lease)
                })
                .count();
            holding * 2 > voters.len()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(term: u64, leader: u64) -> Vote {
        Vote::new_committed(term, leader)
    }

    fn acks(list: &[(u64, Vote, Instant)]) -> HashMap<u64, Ack> {
        list.iter()
            .map(|(id, vote, sent)| {
                (
                    *id,
                    Ack {
                        vote: *vote,
                        sent: *sent,
                    },
                )
            })
            .collect()
    }

    const LEASE: Duration = Duration::from_millis(300);

    #[test]
    fn a_majority_of_fresh_acknowledgements_of_this_vote_holds_the_lease() {
        let t0 = Instant::now();
        let three = vec![BTreeSet::from([1, 2, 3])];
        let v = vote(5, 1);
        // One fresh follower plus the leader: 2 of 3.
        let one = acks(&[(2, v, t0)]);
        assert!(lease_holds(1, &v, &three, &one, t0, LEASE));
        assert!(lease_holds(1, &v, &three, &one, t0 + LEASE / 2, LEASE));
        // Expired exactly at sent + lease.
        assert!(!lease_holds(1, &v, &three, &one, t0 + LEASE, LEASE));
        // No acknowledgement: the leader alone is not a majority.
        assert!(!lease_holds(1, &v, &three, &HashMap::new(), t0, LEASE));
        // An acknowledgement of an older vote (an earlier term) does not count.
        let old = acks(&[(2, vote(4, 1), t0), (3, vote(4, 3), t0)]);
        assert!(!lease_holds(1, &v, &three, &old, t0, LEASE));
    }

    #[test]
    fn five_voters_need_two_followers_and_joint_configurations_need_both() {
        let t0 = Instant::now();
        let v = vote(2, 1);
        let five = vec![BTreeSet::from([1, 2, 3, 4, 5])];
        assert!(!lease_holds(1, &v, &five, &acks(&[(2, v, t0)]), t0, LEASE));
        let two = acks(&[(2, v, t0), (3, v, t0)]);
        assert!(lease_holds(1, &v, &five, &two, t0, LEASE));
        // Joint: old {1,2,3}, new {1,4,5}: followers 2 and 3 cover only the old one.
        let joint = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 4, 5])];
        assert!(!lease_holds(1, &v, &joint, &two, t0, LEASE));
        let both = acks(&[(2, v, t0), (4, v, t0)]);
        assert!(lease_holds(1, &v, &joint, &both, t0, LEASE));
        // No configuration at all never holds.
        assert!(!lease_holds(1, &v, &[], &both, t0, LEASE));
    }

    #[test]
    fn the_check_needs_leadership_of_this_vote_and_a_committed_entry_of_its_term() {
        let t0 = Instant::now();
        let lease = LeaderLease::new(1, Duration::from_millis(400), true);
        let v = vote(7, 1);
        lease.acknowledged(2, &v, t0);
        // An older send for the same vote does not move the lease back.
        lease.acknowledged(2, &v, t0 - Duration::from_millis(100));
        let log_id = |term| LogId::new(openraft::CommittedLeaderId::new(term, 1), 42);
        let view = |leading, vote: Vote, committed| CoreView {
            leading,
            vote,
            committed,
            voter_sets: vec![BTreeSet::from([1, 2, 3])],
        };
        let at = t0 + Duration::from_millis(310);
        assert_eq!(
            lease.check(&view(true, v, Some(log_id(7))), at),
            Some(log_id(7))
        );
        // 0.8 × 400 ms after the send, the lease is over.
        let over = t0 + Duration::from_millis(320);
        assert_eq!(lease.check(&view(true, v, Some(log_id(7))), over), None);
        // Not leading, another node's vote, an uncommitted vote.
        assert_eq!(lease.check(&view(false, v, Some(log_id(7))), at), None);
        assert_eq!(
            lease.check(&view(true, vote(7, 2), Some(log_id(7))), at),
            None
        );
        let uncommitted = Vote::new(7, 1);
        assert_eq!(
            lease.check(&view(true, uncommitted, Some(log_id(7))), at),
            None
        );
        // The newest committed entry is of an earlier term: this term's blank entry is not
        // committed yet.
        assert_eq!(lease.check(&view(true, v, Some(log_id(6))), at), None);
        assert_eq!(lease.check(&view(true, v, None), at), None);
    }
}
