//! Starting a clustered node: openraft over the redb store, the mTLS cluster listener, and
//! first-start bootstrap of a one-node membership when configured.

use crate::early_append::EarlyAppend;
use crate::leader_lease::LeaderLease;
use crate::network::{Network, PeerTls, StreamEarlySender};
use crate::raft_log::RaftLog;
use crate::stream_client::{StreamClient, StreamLeaderCalls};
use crate::types::{NodeInfo, Raft};
use crate::write_batch::WriteBatcher;
use crate::{peer, stream_server, LogStore, StateMachine};
use keystead_store::{RaftLogFile, Store};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// This node's place in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// Where the cluster listener binds.
    pub listen: SocketAddr,
    pub info: NodeInfo,
    /// Initialize a one-node cluster with this node on first start.
    pub bootstrap: bool,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Local address for outgoing peer connections (default: chosen by the OS).
    pub source_ip: Option<std::net::IpAddr>,
    /// Snapshot (and compact the log) every this many entries.
    pub snapshot_logs: u64,
    /// Let the leader answer read indexes from its lease (`leader_lease.rs`) instead of a
    /// heartbeat round each time.
    pub lease_reads: bool,
    /// Send the leader's new entries early (`early_append.rs`).
    pub early_appends: bool,
}

/// How long a node that starts into a cluster of several voters waits to hear from a leader
/// before it may call an election: the followers' own wait after a leader's last heartbeat
/// (openraft's leader lease, which is the longest election timeout, plus an election timeout),
/// and the leader's retry interval towards a node it could not reach
/// ([`crate::network::REPLICATION_BACKOFF`]).
///
/// Why: openraft hands a restarted node its vote uncommitted (`LogStore::read_vote`), and an
/// uncommitted vote times out after one election timeout, sooner than the leader, which backs
/// off from a node it found dead, reaches it again. The node then called an election the
/// moment it came back: in a term no higher than the leader's, with a shorter log. Refused, it
/// still deposed the leader when its vote ordered above the leader's in the same term, costing
/// a second election, and left openraft's "seen a greater log" mark on the nodes, which adds
/// two election timeouts to their next election: the bench's failovers that took 1.5 s instead
/// of 0.8 (`docs/benchmarks.md`). A whole cluster restarting elects this much later.
fn hold_elections_after_restart(raft: &Raft, election_timeout_max: Duration) {
    let voters = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .count();
    if voters < 2 {
        return;
    }
    raft.runtime_config().elect(false);
    let grace = 2 * election_timeout_max + crate::network::REPLICATION_BACKOFF;
    let raft = raft.clone();
    tokio::spawn(async move {
        let _ = raft
            .wait(Some(grace))
            .metrics(|m| m.current_leader.is_some(), "a leader heard from")
            .await;
        raft.runtime_config().elect(true);
    });
}

pub struct ClusterNode {
    pub raft: Raft,
    pub log: Arc<RaftLog>,
    pub lease: Arc<LeaderLease>,
    /// This node's early appends as leader (`early_append.rs`), counted for `cluster status`.
    pub early: Arc<EarlyAppend>,
    pub settings: ClusterSettings,
}

impl ClusterNode {
    /// Whether this node currently leads its region's Raft group.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.settings.node_id)
    }

    pub async fn start(
        settings: ClusterSettings,
        store: Arc<Store>,
        log_file: Arc<RaftLogFile>,
        tls: PeerTls,
    ) -> Result<Arc<ClusterNode>, String> {
        let config = openraft::Config {
            cluster_name: "keystead".into(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_ms.0,
            election_timeout_max: settings.election_timeout_ms.1,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_logs),
            // Keep a little log behind each snapshot so a briefly lagging follower catches up
            // from the log; anyone further behind gets the snapshot.
            max_in_snapshot_log_to_keep: (settings.snapshot_logs / 5).max(10),
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("raft config: {e}"))?;
        let election_timeout_max = Duration::from_millis(config.election_timeout_max);
        let peers = Arc::new(StreamClient::new(&tls, settings.source_ip)?);
        let lease = Arc::new(LeaderLease::new(
            settings.node_id,
            election_timeout_max,
            settings.lease_reads,
        ));
        let early = EarlyAppend::new(settings.node_id, Arc::new(StreamEarlySender(peers.clone())));
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            Network::new(peers.clone(), lease.clone()),
            {
                let log_store = LogStore::open(log_file.clone(), store.clone())
                    .map_err(|e| format!("opening the raft log: {e}"))?;
                if settings.early_appends {
                    log_store.with_early_append(early.clone())
                } else {
                    log_store
                }
            },
            StateMachine::new(store, log_file),
        )
        .await
        .map_err(|e| format!("starting raft: {e}"))?;
        early.attach(raft.clone());
        hold_elections_after_restart(&raft, election_timeout_max);

        let listener_tls = peer::cluster_listener_tls(&tls)?;
        // Bound before Raft starts answering, so a port in use fails the start.
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cluster listener on {}: {e}", settings.listen))?;
        let writes = WriteBatcher::start(raft.clone());
        let log = Arc::new(RaftLog::new(
            raft.clone(),
            Arc::new(StreamLeaderCalls(peers)),
            lease.clone(),
            writes.clone(),
        ));
        let state = Arc::new(peer::PeerState {
            raft: raft.clone(),
            log: log.clone(),
            writes,
        });
        let handler: stream_server::Handler = Arc::new(move |kind, body| {
            let state = state.clone();
            Box::pin(async move { peer::answer(&state, kind, &body).await })
        });
        tokio::spawn(stream_server::serve(listener, listener_tls, handler));

        if settings.bootstrap && !raft.is_initialized().await.map_err(|e| e.to_string())? {
            let members = BTreeMap::from([(settings.node_id, settings.info.clone())]);
            raft.initialize(members)
                .await
                .map_err(|e| format!("initializing the cluster: {e}"))?;
            tracing::info!(node_id = settings.node_id, "initialized a new cluster");
        }
        Ok(Arc::new(ClusterNode {
            raft,
            log,
            lease,
            early,
            settings,
        }))
    }
}
