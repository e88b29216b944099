//! `CommandLog` over Raft: a write is appended through openraft on the leader (forwarded there
//! over the cluster channel when this node is a follower) and answered with the result of
//! applying it; a read barrier asks the leader for its read index and waits until this node
//! has applied that far.

use crate::leader_calls::{CallFuture, LeaderCalls};
use crate::leader_lease::LeaderLease;
use crate::peer::{read_index_shared, PeerAnswer};
use crate::read_batch::ReadBatcher;
use crate::types::{LogId, NodeInfo, Raft, Response};
use crate::write_batch::WriteBatcher;
use keystead_core::log::{BarrierFuture, ProposeFuture};
use keystead_core::{CommandLog, CoreError};
use keystead_model::{Applied, Command};
use std::sync::Arc;
use std::time::Duration;

/// How long a write or read waits for a leader before answering 503.
const LEADER_WAIT: Duration = Duration::from_secs(5);

pub struct RaftLog {
    raft: Raft,
    /// How this node reaches the leader when it follows.
    calls: Arc<dyn LeaderCalls>,
    /// This node's readers share read-index rounds (through the leader when following).
    reads: ReadBatcher,
    /// On the leader, the rounds themselves are shared with followers' read-index requests.
    leader_reads: ReadBatcher,
    /// Answers the leader's rounds without a heartbeat while it holds.
    lease: Arc<LeaderLease>,
    /// Writes go into Raft entries in batches, with followers' forwarded writes.
    writes: Arc<WriteBatcher>,
}

impl RaftLog {
    pub fn new(
        raft: Raft,
        calls: Arc<dyn LeaderCalls>,
        lease: Arc<LeaderLease>,
        writes: Arc<WriteBatcher>,
    ) -> RaftLog {
        RaftLog {
            raft,
            calls,
            reads: Default::default(),
            leader_reads: Default::default(),
            lease,
            writes,
        }
    }

    /// Answers a follower's read-index request, in a round shared with this node's own readers
    /// and every other follower's (`peer::read_index_shared`).
    pub async fn serve_read_index(&self) -> PeerAnswer<Option<LogId>> {
        read_index_shared(&self.raft, &self.leader_reads, &self.lease).await
    }

    /// What a linearizable read waits for: a read index taken after the call (from a round
    /// shared with this node's other readers, asked of the leader when this node follows), then
    /// this node having applied that far. Answers the read index.
    pub async fn read_index_applied(&self) -> Result<Option<LogId>, CoreError> {
        let read_index: Option<LogId> = self
            .reads
            .read_index(|| {
                self.via_leader(
                    || read_index_shared(&self.raft, &self.leader_reads, &self.lease),
                    |leader| self.calls.read_index(leader),
                )
            })
            .await?;
        if let Some(log_id) = read_index {
            self.raft
                .wait(Some(LEADER_WAIT))
                .applied_index_at_least(Some(log_id.index), "read barrier")
                .await
                .map_err(|e| CoreError::Unavailable(format!("catching up: {e}")))?;
        }
        Ok(read_index)
    }

    fn current_leader(&self) -> Option<NodeInfo> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
    }

    /// Runs `local` if this node leads, else asks the leader with `remote`; retries while no
    /// leader is known, for at most [`LEADER_WAIT`].
    async fn via_leader<T, Local, LocalFut>(
        &self,
        local: Local,
        remote: impl Fn(NodeInfo) -> CallFuture<T>,
    ) -> Result<T, CoreError>
    where
        Local: Fn() -> LocalFut,
        LocalFut: std::future::Future<Output = PeerAnswer<T>>,
    {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut last_error = String::from("no leader");
        loop {
            let mut hint = None;
            // A leader cut off from its quorum never commits: bound the wait, and answer with
            // an unknown outcome (503) rather than hang.
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining, local()).await {
                Ok(PeerAnswer::Done(value)) => return Ok(value),
                Ok(PeerAnswer::NotLeader(leader)) => hint = leader,
                Ok(PeerAnswer::Failed(e)) => last_error = e,
                Err(_) => return Err(CoreError::Unavailable("no quorum reachable".into())),
            }
            if let Some(leader) = hint.or_else(|| self.current_leader()) {
                match remote(leader).await {
                    Ok(PeerAnswer::Done(value)) => return Ok(value),
                    Ok(PeerAnswer::NotLeader(_)) => last_error = "leader changed".into(),
                    Ok(PeerAnswer::Failed(e)) => last_error = e,
                    Err(e) => last_error = e,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CoreError::Unavailable(last_error));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl CommandLog for RaftLog {
    fn propose(&self, command: Command) -> ProposeFuture<'_> {
        Box::pin(async move {
            let response: Response = self
                .via_leader(
                    || self.writes.propose(command.clone()),
                    |leader| self.calls.propose(leader, command.clone()),
                )
                .await?;
            match response.0 {
                Some(Ok(applied)) => Ok(applied),
                Some(Err(refusal)) => Err(CoreError::Refused(refusal)),
                None => Ok(Applied::Done),
            }
        })
    }

    fn runs_timers(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.current_leader == Some(metrics.id)
    }

    fn read_barrier(&self) -> BarrierFuture<'_> {
        Box::pin(async move { self.read_index_applied().await.map(|_| ()) })
    }
}
