//! A server host's software: the production `LogStore` and `StateMachine` on a `Store` opened on
//! the host's simulated disk, openraft with short timings and frequent snapshots, and the sim
//! transport. Each boot registers its Raft handle and a weak reference to its store, so the
//! driver can watch metrics, read the state at the end, and prove a crashed boot's store is gone.

use crate::net::{self, NetStats, Served};
use keystead_replication::early_append::EarlyAppend;
use keystead_replication::leader_lease::LeaderLease;
use keystead_replication::raft_log::RaftLog;
use keystead_replication::types::Raft;
use keystead_replication::write_batch::WriteBatcher;
use keystead_replication::{LogStore, NodeInfo, StateMachine};
use keystead_store::sim_disk::SimDisk;
use keystead_store::{RaftLogFile, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

/// The server nodes: ids 1..=NODES, host names `n1`, `n2`, ...
pub const NODES: u64 = 3;

pub fn host(id: u64) -> String {
    format!("n{id}")
}

/// What the driver can see of a running boot.
#[derive(Clone)]
pub struct Running {
    pub raft: Raft,
    pub store: Weak<Store>,
    pub log: Weak<RaftLogFile>,
    pub writes: Arc<WriteBatcher>,
    pub lease: Arc<LeaderLease>,
    pub early: Arc<EarlyAppend>,
    /// The last log index this boot started with (what its disk kept).
    pub boot_last_index: Option<u64>,
}

/// The running boot of each node, shared by the hosts and the driver.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<BTreeMap<u64, Running>>>);

impl Registry {
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Running>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn members() -> BTreeMap<u64, NodeInfo> {
    (1..=NODES)
        .map(|id| {
            let info = NodeInfo {
                addr: host(id),
                api_addr: host(id),
                zone: format!("zone-{id}"),
                region: "sim".into(),
            };
            (id, info)
        })
        .collect()
}

/// Raft timings in simulated milliseconds, and snapshots (with log purge) every 20 entries in
/// small chunks, so that building, sending and installing snapshots happen many times a run.
fn config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "keystead-sim".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: ELECTION_TIMEOUT_MAX.as_millis() as u64,
        install_snapshot_timeout: 500,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 5,
        snapshot_max_chunk_size: 16 * 1024,
        ..Default::default()
    };
    Arc::new(config.validate().expect("a valid raft config"))
}

/// The followers' vote lease (`election_timeout_max` above), for the leader lease.
const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(300);

/// One boot of node `id`: opens the store on what its disk kept, starts Raft and serves.
/// Node 1 initializes the cluster on its first boot.
pub async fn run(
    id: u64,
    disk: SimDisk,
    registry: Registry,
    stats: Arc<NetStats>,
) -> turmoil::Result {
    // The state and the Raft log in two files of the node's one disk, as in production.
    let [state_file, log_file] = disk.backends(["keystead.redb", "raft-log.redb"]);
    let store = Arc::new(Store::open_on(state_file)?);
    let log = Arc::new(RaftLogFile::open_on(log_file)?);
    let lease = Arc::new(LeaderLease::new(id, ELECTION_TIMEOUT_MAX, true));
    let early = EarlyAppend::new(id, Arc::new(net::SimEarlySender));
    let raft = Raft::new(
        id,
        config(),
        net::Network {
            lease: lease.clone(),
        },
        LogStore::open(log.clone(), store.clone())?.with_early_append(early.clone()),
        StateMachine::new(store.clone(), log.clone()),
    )
    .await?;
    // Nothing has reached this boot yet: its listener is not bound.
    let boot_last_index = raft.metrics().borrow().last_log_index;
    early.attach(raft.clone());
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", net::PORT)).await?;
    let writes = WriteBatcher::start(raft.clone());
    registry.lock().insert(
        id,
        Running {
            raft: raft.clone(),
            store: Arc::downgrade(&store),
            log: Arc::downgrade(&log),
            writes: writes.clone(),
            lease: lease.clone(),
            early: early.clone(),
            boot_last_index,
        },
    );
    if id == 1 && !raft.is_initialized().await? {
        raft.initialize(members()).await?;
    }
    let log = Arc::new(RaftLog::new(
        raft.clone(),
        Arc::new(net::SimLeaderCalls),
        lease.clone(),
        writes.clone(),
    ));
    let served = Served {
        raft,
        writes,
        lease,
        store,
        stats,
        log,
    };
    net::serve(listener, served).await?;
    Ok(())
}
