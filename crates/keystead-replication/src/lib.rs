//! Zone redundancy: a region is a Raft cluster whose replicated log carries Keystead's
//! commands. This is the only crate that imports openraft.
//!
//! - [`types`]: the openraft type configuration (commands in, apply results out).
//! - [`log_store`]: the Raft log and vote in their own redb file (fsync before acknowledging).
//! - [`state_machine`]: applies committed entries to the store's tables; snapshots are the
//!   store's state tables, which hold only ciphertext.
//! - [`write_batch`]: group commit, concurrent writes on the leader share one entry.
//! - [`leader_lease`]: the leader answers read indexes without a heartbeat round while a
//!   quorum of followers' vote leases holds.
//! - [`raft_log`]: Keystead's `CommandLog` over Raft (writes forwarded to the leader, read
//!   barriers); [`leader_calls`]: how it reaches the leader (the node transport here, the
//!   simulation's own transport there).
//! - The node transport: [`frame`] (the wire format), [`stream_client`] and [`stream_server`]
//!   (pooled mutual-TLS streams), [`peer`] (what the cluster listener answers), [`network`]
//!   (openraft's network over it).
//! - `blocking`: log appends and applies on the calling thread rather than `spawn_blocking`.

// openraft's `StorageError` is large by design and every storage trait method returns it; boxing
// it in our helpers would only add conversions at each call.
#![allow(clippy::result_large_err)]

pub mod admin;
mod blocking;
pub mod cluster;
pub mod early_append;
pub mod frame;
pub mod leader_calls;
pub mod leader_lease;
pub mod log_store;
pub mod network;
pub mod peer;
pub mod raft_log;
mod read_batch;
pub mod state_machine;
pub mod stream_client;
pub mod stream_server;
pub mod types;
pub mod write_batch;

pub use cluster::{ClusterNode, ClusterSettings};
pub use log_store::{open_log_file, LogStore};
pub use network::PeerTls;
pub use state_machine::StateMachine;
pub use types::{NodeInfo, TypeConfig};

/// Maps any displayable storage failure to openraft's I/O error for `subject`.
pub(crate) fn io_error<E: std::error::Error + 'static>(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<u64>,
    e: E,
) -> openraft::StorageError<u64> {
    openraft::StorageError::IO {
        source: make(openraft::AnyError::new(&e)),
    }
}
