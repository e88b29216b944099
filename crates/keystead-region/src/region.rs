//! One node's region runtime: the settings, the store and the region's own log, and the
//! volatile facts the protocol depends on (leases held and granted, last contact with the
//! primary, replication lag). Every task of the crate shares one `Region`.
//!
//! Times are milliseconds on this process's monotonic clock (`now_ms`): leases and contact
//! windows are durations measured locally, never compared across machines.

use crate::client::RegionClient;
use crate::protocol::Topology;
use crate::settings::RegionSettings;
use keystead_core::{CommandLog, CoreError};
use keystead_model::{Applied, Command, EpochStart, RegionRole, RegionState};
use keystead_store::Store;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A secondary that heard from its primary within this window forwards writes to it; after
/// it, writes are refused at once.
pub(crate) const CONTACT_WINDOW_MS: u64 = 1500;
/// How long a forwarded write waits for its own entry to arrive back in this region, so that
/// a read right after the write sees it.
const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(2);
/// How often a wait for the stream position looks again without a notification.
const SEQ_POLL: Duration = Duration::from_millis(20);

#[derive(Default, Clone, Copy)]
struct Lag {
    behind: u64,
    caught_up_ms: u64,
}

pub type LeaderCheck = Box<dyn Fn() -> bool + Send + Sync>;

pub struct Region {
    pub settings: RegionSettings,
    pub(crate) store: Arc<Store>,
    /// This region's own log (single-node or Raft): region commands and replicated entries
    /// are proposed here.
    pub(crate) inner: Arc<dyn CommandLog>,
    pub(crate) client: RegionClient,
    is_leader: LeaderCheck,
    start: Instant,
    /// Primary: writes are accepted until then (when a witness makes leases necessary).
    lease_until_ms: AtomicU64,
    /// Secondary: the last time the primary answered us or asked us for a lease.
    primary_contact_ms: AtomicU64,
    /// Secondary: a lease granted to the primary runs until then.
    granted_until_ms: AtomicU64,
    /// When this node last became its region's leader (failover timers start no earlier).
    leader_since_ms: AtomicU64,
    was_leader: AtomicBool,
    lag: Mutex<Lag>,
    /// Signalled whenever replication applied something.
    pub(crate) progressed: Notify,
    /// A switchover or failover is being run by this node.
    pub(crate) changing_role: AtomicBool,
}

impl Region {
    pub fn new(
        settings: RegionSettings,
        store: Arc<Store>,
        inner: Arc<dyn CommandLog>,
        client: RegionClient,
        is_leader: LeaderCheck,
    ) -> Arc<Region> {
        Arc::new(Region {
            settings,
            store,
            inner,
            client,
            is_leader,
            start: Instant::now(),
            lease_until_ms: AtomicU64::new(0),
            primary_contact_ms: AtomicU64::new(0),
            granted_until_ms: AtomicU64::new(0),
            leader_since_ms: AtomicU64::new(0),
            was_leader: AtomicBool::new(false),
            lag: Mutex::new(Lag::default()),
            progressed: Notify::new(),
            changing_role: AtomicBool::new(false),
        })
    }

    pub(crate) fn now_ms(&self) -> u64 {
        // Offset by one so that 0 can mean "never".
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Whether this node leads its region (always, for a single node). Tracks when leadership
    /// began, which bounds how long a lease granted by a previous leader can still run.
    pub(crate) fn is_leader(&self) -> bool {
        let leader = (self.is_leader)();
        if leader && !self.was_leader.swap(true, Ordering::SeqCst) {
            self.leader_since_ms.store(self.now_ms(), Ordering::SeqCst);
        } else if !leader {
            self.was_leader.store(false, Ordering::SeqCst);
        }
        leader
    }

    pub(crate) fn leader_since_ms(&self) -> u64 {
        self.leader_since_ms.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> Result<Option<RegionState>, CoreError> {
        Ok(self.store.read()?.region_state()?)
    }

    pub fn seq(&self) -> Result<u64, CoreError> {
        Ok(self.store.read()?.region_seq()?)
    }

    pub(crate) fn topology(&self) -> Result<Topology, CoreError> {
        let state = self
            .state()?
            .ok_or_else(|| CoreError::Unavailable("the region is not configured yet".into()))?;
        Ok(topology_of(&state))
    }

    /// First start: records this region's role in epoch 1.
    pub async fn configure(&self) -> Result<(), CoreError> {
        if self.state()?.is_some() {
            return Ok(());
        }
        let primary = self.settings.initial_primary.clone();
        let role = if primary == self.settings.name {
            RegionRole::Primary
        } else {
            RegionRole::Secondary
        };
        let state = RegionState {
            region: self.settings.name.clone(),
            epoch: 1,
            role,
            primary: primary.clone(),
            fenced: false,
            history: vec![EpochStart {
                epoch: 1,
                primary,
                start_seq: 0,
            }],
            outbox_keep: self.settings.outbox_keep,
        };
        match self
            .inner
            .propose(Command::SetRegion {
                expected_epoch: None,
                state,
            })
            .await
        {
            Ok(_) => Ok(()),
            // Another node of the region configured it first.
            Err(CoreError::Refused(_)) if self.state()?.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adopts `topology` if it is newer than ours: we become the secondary of its primary (or
    /// its primary, if a promotion of ours was recorded elsewhere before we could apply it).
    pub(crate) async fn learn(&self, topology: &Topology) -> Result<(), CoreError> {
        let Some(current) = self.state()? else {
            return Ok(());
        };
        if topology.epoch <= current.epoch {
            return Ok(());
        }
        let role = if topology.primary == self.settings.name {
            RegionRole::Primary
        } else {
            RegionRole::Secondary
        };
        tracing::warn!(
            region = %self.settings.name,
            from_epoch = current.epoch,
            to_epoch = topology.epoch,
            primary = %topology.primary,
            "a newer epoch is in force; adopting it"
        );
        let state = RegionState {
            region: current.region.clone(),
            epoch: topology.epoch,
            role,
            primary: topology.primary.clone(),
            fenced: false,
            history: merge_history(&current.history, &topology.history),
            outbox_keep: current.outbox_keep,
        };
        self.set_state(current.epoch, state).await
    }

    pub(crate) async fn set_state(
        &self,
        expected: u64,
        state: RegionState,
    ) -> Result<(), CoreError> {
        match self
            .inner
            .propose(Command::SetRegion {
                expected_epoch: Some(expected),
                state,
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // --- the primary's lease -------------------------------------------------------------

    pub(crate) fn lease_required(&self) -> bool {
        self.settings.witness.is_some()
    }

    pub(crate) fn set_lease_until(&self, until_ms: u64) {
        self.lease_until_ms.fetch_max(until_ms, Ordering::SeqCst);
    }

    pub(crate) fn drop_lease(&self) {
        self.lease_until_ms.store(0, Ordering::SeqCst);
    }

    pub fn lease_valid(&self) -> bool {
        !self.lease_required() || self.now_ms() < self.lease_until_ms.load(Ordering::SeqCst)
    }

    // --- contact with the primary, leases granted ---------------------------------------

    pub(crate) fn heard_from_primary(&self) {
        self.primary_contact_ms
            .store(self.now_ms(), Ordering::SeqCst);
    }

    pub(crate) fn primary_contact_ms(&self) -> u64 {
        self.primary_contact_ms.load(Ordering::SeqCst)
    }

    /// Whether writes can reach the primary from here: always on the primary itself.
    pub fn primary_in_reach(&self, role: RegionRole) -> bool {
        role == RegionRole::Primary || self.primary_reachable()
    }

    pub fn primary_reachable(&self) -> bool {
        let contact = self.primary_contact_ms();
        contact != 0 && self.now_ms().saturating_sub(contact) < CONTACT_WINDOW_MS
    }

    pub(crate) fn grant_until(&self, until_ms: u64) {
        self.granted_until_ms.fetch_max(until_ms, Ordering::SeqCst);
    }

    pub(crate) fn granted_until_ms(&self) -> u64 {
        self.granted_until_ms.load(Ordering::SeqCst)
    }

    // --- lag ------------------------------------------------------------------------------

    pub(crate) fn record_lag(&self, behind: u64) {
        let now = self.now_ms();
        if let Ok(mut lag) = self.lag.lock() {
            lag.behind = behind;
            if behind == 0 {
                lag.caught_up_ms = now;
            }
        }
    }

    /// Entries and seconds behind the primary (0 on the primary, `role` being this region's).
    /// Seconds count from the last time this region was caught up, so they keep growing while
    /// the primary is out of reach.
    pub fn lag(&self, role: RegionRole) -> (u64, f64) {
        if role == RegionRole::Primary {
            return (0, 0.0);
        }
        let now = self.now_ms();
        let Ok(lag) = self.lag.lock() else {
            return (0, 0.0);
        };
        if lag.behind == 0 && self.primary_reachable() {
            return (0, 0.0);
        }
        let since = if lag.caught_up_ms == 0 {
            now
        } else {
            now - lag.caught_up_ms.min(now)
        };
        (lag.behind, since as f64 / 1000.0)
    }

    // --- writes ---------------------------------------------------------------------------

    /// Proposes a vault command on the primary: only while not fenced and holding the lease,
    /// and acknowledged only if the lease still held when the command was applied.
    pub(crate) async fn propose_as_primary(&self, command: Command) -> Result<Applied, CoreError> {
        let state = self.state()?;
        if let Some(state) = &state {
            if state.fenced {
                return Err(CoreError::Unavailable(format!(
                    "region {} is handing over the primary role",
                    state.region
                )));
            }
        }
        self.wait_for_lease().await?;
        let outcome = self.inner.propose(command).await;
        if !self.lease_valid() {
            return Err(CoreError::Unavailable(
                "the region lease ran out while the write was in flight; its outcome is unknown"
                    .into(),
            ));
        }
        match outcome {
            // The fence (or a demotion) landed between our check and the apply.
            Err(CoreError::Refused(keystead_model::ApplyError::Region(m))) => {
                Err(CoreError::Unavailable(m))
            }
            other => other,
        }
    }

    /// A primary whose lease lapsed (or was never acquired since start) waits briefly for the
    /// lease keeper before refusing.
    async fn wait_for_lease(&self) -> Result<(), CoreError> {
        for _ in 0..10 {
            if self.lease_valid() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(CoreError::ReadOnly {
            region: self.settings.name.clone(),
            detail:
                "this primary holds no lease from a majority of {primary, secondary, witness}; \
                     it is cut off and refuses writes so that a promoted secondary cannot \
                     diverge from it"
                    .into(),
        })
    }

    /// Waits (bounded) until this region has applied the stream up to `seq`.
    pub(crate) async fn wait_for_seq(&self, seq: u64) {
        self.wait_for_seq_until(seq, tokio::time::Instant::now() + READ_YOUR_WRITE_WAIT)
            .await;
    }

    /// Waits until this node has applied the stream up to `seq` or `deadline` passes; says
    /// which. The replicator (on the region leader) signals progress; other nodes of the
    /// region apply through Raft, so the wait also polls.
    pub(crate) async fn wait_for_seq_until(
        &self,
        seq: u64,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            let notified = self.progressed.notified();
            if self.seq().map(|s| s >= seq).unwrap_or(true) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(SEQ_POLL, notified).await;
        }
    }
}

pub(crate) fn topology_of(state: &RegionState) -> Topology {
    Topology {
        region: state.region.clone(),
        epoch: state.epoch,
        role: state.role,
        primary: state.primary.clone(),
        history: state.history.clone(),
    }
}

/// Our history plus every epoch start we did not know of, ordered by epoch.
pub(crate) fn merge_history(ours: &[EpochStart], theirs: &[EpochStart]) -> Vec<EpochStart> {
    let mut merged = ours.to_vec();
    for start in theirs {
        if !merged.iter().any(|s| s.epoch == start.epoch) {
            merged.push(start.clone());
        }
    }
    merged.sort_by_key(|s| s.epoch);
    merged
}
