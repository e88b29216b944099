//! The openraft type configuration: the log carries `keystead_model::Command`s and applying an
//! entry answers with the state machine's `ApplyResult`.

use keystead_model::{Applied, ApplyError, Command};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// Where a node lives and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the node's cluster (node-to-node) listener.
    pub addr: String,
    /// `host:port` of the node's client (Key Vault API) listener.
    pub api_addr: String,
    pub zone: String,
    pub region: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (zone {}, region {})",
            self.addr, self.zone, self.region
        )
    }
}

/// What applying one entry produced: `None` for blank and membership entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response(pub Option<Result<Applied, ApplyError>>);

openraft::declare_raft_types!(
    /// Keystead's Raft types.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;
pub type StorageError = openraft::StorageError<u64>;
