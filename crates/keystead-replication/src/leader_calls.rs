//! How a node reaches the leader for the two things only the leader does: append a write, and
//! take a read index. Production sends them over the node transport (`stream_client.rs`:
//! pooled mutual-TLS streams); the simulation sends them over its own transport, so
//! that it runs `RaftLog`'s own forwarding, retries and read batching rather than a copy.

use crate::peer::PeerAnswer;
use crate::types::{LogId, NodeInfo, Response};
use keystead_model::Command;
use std::future::Future;
use std::pin::Pin;

/// A call's answer from the leader, or why none came (the outcome of a forwarded write is then
/// unknown).
pub type CallFuture<T> = Pin<Box<dyn Future<Output = Result<PeerAnswer<T>, String>> + Send>>;

pub trait LeaderCalls: Send + Sync + 'static {
    /// Asks `leader` to append `command` (in a batch with its other writes) and answer with
    /// the result of applying it.
    fn propose(&self, leader: NodeInfo, command: Command) -> CallFuture<Response>;

    /// Asks `leader` for a read index: the log id every linearizable read arriving now must see
    /// applied.
    fn read_index(&self, leader: NodeInfo) -> CallFuture<Option<LogId>>;
}
