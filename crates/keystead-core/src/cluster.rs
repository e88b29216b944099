//! The seam through which the admin API manages cluster membership without knowing the
//! consensus library: `keystead-replication` implements [`ClusterAdmin`].

use crate::CoreError;
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;

pub type AdminFuture<'a> =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, CoreError>> + Send + 'a>>;

/// A request to add a node as a voter.
#[derive(Clone, Debug, Deserialize)]
pub struct JoinRequest {
    pub node_id: u64,
    /// The node's cluster (node-to-node) address, `host:port`.
    pub addr: String,
    /// The node's client API address, `host:port`.
    pub api_addr: String,
    pub zone: String,
    #[serde(default)]
    pub region: String,
    /// Accept a layout in which one zone holds a voting majority.
    #[serde(default)]
    pub allow_unsafe_layout: bool,
}

pub trait ClusterAdmin: Send + Sync {
    /// Each node's zone, role, term, last log and applied index, lag and health.
    fn status(&self) -> AdminFuture<'_>;
    /// Adds a node: first as a learner that catches up (by snapshot if needed), then as a voter.
    fn join(&self, request: JoinRequest) -> AdminFuture<'_>;
    /// Removes a node from the voters and the cluster.
    fn remove(&self, node_id: u64) -> AdminFuture<'_>;
    /// Whether a load balancer should send traffic here: a leader is known (this node is part
    /// of a working quorum) and this node has applied its log. `Err` says why not.
    fn readiness(&self) -> Result<(), String>;
}
