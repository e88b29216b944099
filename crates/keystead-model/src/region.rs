//! Regions: the durable view one region keeps of the deployment's region topology, and the
//! entries of the cross-region replication stream.
//!
//! Every region-level role change (promotion, demotion) increments the **epoch**. The primary
//! numbers every vault command it applies with a deployment-wide sequence number (`seq`) and
//! keeps the recent ones in its outbox, tagged with the epoch they were written in; a secondary
//! applies exactly those entries in `seq` order, so both regions agree on what `seq` N means
//! until a forced failover makes them diverge — which the epoch history makes detectable.

use crate::{Command, UnixTime};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionRole {
    /// Accepts writes and streams them to the secondaries.
    Primary,
    /// Applies the primary's stream; serves the read-only operation set; forwards writes.
    Secondary,
}

impl RegionRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionRole::Primary => "primary",
            RegionRole::Secondary => "secondary",
        }
    }
}

/// Epoch `epoch` began with `primary` promoted after `start_seq`: its own writes are numbered
/// from `start_seq + 1`. Entries an older primary wrote above `start_seq` in an older epoch
/// never became part of the deployment's history: they are divergent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: u64,
    pub primary: String,
    pub start_seq: u64,
}

/// This region's durable view of the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionState {
    /// This region's name.
    pub region: String,
    pub epoch: u64,
    pub role: RegionRole,
    /// The primary region of `epoch`, as far as this region knows.
    pub primary: String,
    /// Writes are fenced: a planned switchover is handing the primary role over.
    pub fenced: bool,
    /// Every epoch this region has learned of, oldest first.
    pub history: Vec<EpochStart>,
    /// How many recent stream entries the outbox keeps; a secondary further behind catches up
    /// from a snapshot. Part of the state so that every replica trims alike.
    pub outbox_keep: u64,
}

impl RegionState {
    /// The highest `seq` that belongs to the deployment's history for an entry written in
    /// `epoch`: the start of the next epoch this region knows of, or `None` (unbounded) if
    /// `epoch` is the current one.
    pub fn epoch_end(&self, epoch: u64) -> Option<u64> {
        self.history
            .iter()
            .filter(|start| start.epoch > epoch)
            .map(|start| start.start_seq)
            .min()
    }
}

/// Who asked for a command and when, by the proposer's clock: kept with the command in the
/// outbox so a divergence record can say who wrote what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub caller: String,
    pub at: UnixTime,
}

/// One entry of the replication stream: a vault command as the primary applied it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub seq: u64,
    /// The epoch of the primary that wrote it.
    pub epoch: u64,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DivergenceStatus {
    /// Waiting for the operator.
    Pending,
    /// Re-applied onto the primary; one outcome per entry (`Ok` or the conflict).
    Applied {
        outcomes: Vec<Result<(), String>>,
    },
    Discarded,
}

/// Writes a former primary acknowledged in `epoch` that never reached the region promoted in
/// its place: kept, not dropped, until the operator applies or discards them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivergenceRecord {
    pub id: String,
    /// The epoch the entries were written in.
    pub epoch: u64,
    /// The epoch that superseded it (whose primary did not get the entries).
    pub superseded_by: u64,
    pub entries: Vec<StreamEntry>,
    pub status: DivergenceStatus,
}
