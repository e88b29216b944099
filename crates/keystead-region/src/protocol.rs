//! The region protocol: what regions (and the witness) say to each other over mutually
//! authenticated TLS. Every message carries the sender's epoch; whoever learns of a newer epoch
//! adopts it, and anything from an older epoch is refused with the newer one in the answer.

use keystead_model::{Applied, ApplyError, Command, EpochStart, RegionRole, StreamEntry};
use serde::{Deserialize, Serialize};

pub const STREAM: &str = "/region/v1/stream";
pub const SNAPSHOT: &str = "/region/v1/snapshot";
pub const PROPOSE: &str = "/region/v1/propose";
pub const LEASE: &str = "/region/v1/lease";
pub const STATUS: &str = "/region/v1/status";
pub const FENCE: &str = "/region/v1/fence";
pub const DEMOTE: &str = "/region/v1/demote";
pub const ADMIN: &str = "/region/v1/admin";
pub const PROMOTE: &str = "/region/v1/promote";

/// A region's view of the topology, as carried in answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Topology {
    pub region: String,
    pub epoch: u64,
    pub role: RegionRole,
    pub primary: String,
    pub history: Vec<EpochStart>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StreamRequest {
    pub from: u64,
    pub limit: usize,
    /// Long poll: when nothing at or after `from` exists yet, wait up to this long for it.
    #[serde(default)]
    pub wait_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StreamReply {
    pub topology: Topology,
    /// The sender's last seq.
    pub head: u64,
    /// `from` is older than the outbox: fetch a snapshot.
    pub snapshot_needed: bool,
    pub entries: Vec<StreamEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotReply {
    pub topology: Topology,
    pub seq: u64,
    pub epoch: u64,
    /// The vault state tables (ciphertext only), base64.
    pub state: String,
}

/// A write forwarded by a secondary.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProposeRequest {
    pub epoch: u64,
    pub command: Command,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ProposeReply {
    /// Applied (or deterministically refused) at `seq` or before.
    Done {
        outcome: Result<Applied, ApplyError>,
        seq: u64,
    },
    /// The receiver is not the primary of the sender's epoch (or of a newer one).
    NotPrimary(Topology),
    /// Try again shortly (fenced, no quorum, no lease): outcome unknown for `Unavailable`.
    Retry(String),
    ReadOnly(String),
    Failed(String),
}

/// The primary's heartbeat; a grant is a promise not to help promote anyone else until it
/// runs out.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub topology: Topology,
    pub lease_ms: u64,
    /// The primary's last seq: every secondary node computes its lag from it.
    pub head: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseReply {
    pub granted: bool,
    pub topology: Topology,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FenceRequest {
    pub epoch: u64,
    /// Lift the fence (a switchover that could not finish).
    pub lift: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FenceReply {
    /// Fenced at `seq`: no write will get a later seq in this epoch.
    Fenced {
        seq: u64,
    },
    Lifted,
    NotPrimary(Topology),
    Failed(String),
}

/// Tells a region that `topology` (a newer epoch) is in force.
#[derive(Debug, Serialize, Deserialize)]
pub struct DemoteRequest {
    pub topology: Topology,
}

/// Asks the witness to record a new epoch with `region` as its primary.
#[derive(Debug, Serialize, Deserialize)]
pub struct PromoteRequest {
    pub epoch: u64,
    pub region: String,
    pub start_seq: u64,
    /// How long the candidate has not heard from the primary; the witness must not have either.
    pub failover_after_ms: u64,
    /// The operator insists (forced failover) or the primary is fenced (switchover): skip the
    /// contact check, but still wait out any lease granted.
    pub force: bool,
    /// The old primary is fenced at `start_seq` (switchover): it accepts no more writes, so
    /// its lease need not be waited out.
    pub fenced: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PromoteReply {
    Granted(Topology),
    /// A lease granted to the old primary is live for `ms` more.
    Wait {
        ms: u64,
    },
    Refused(String),
}
