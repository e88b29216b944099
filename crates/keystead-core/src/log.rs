//! The seam between operations and durability. A `CommandLog` takes a command, makes it
//! durable, applies it and returns what applying produced. Single-node mode uses
//! [`LocalLog`] (append + apply + fsync in one redb transaction); the replicated modes plug in
//! a Raft-backed implementation with the same contract.

use crate::CoreError;
use keystead_model::{Applied, Command};
use keystead_store::Store;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type ProposeFuture<'a> = Pin<Box<dyn Future<Output = Result<Applied, CoreError>> + Send + 'a>>;

pub trait CommandLog: Send + Sync {
    /// Returns only once the command is durable and applied; the result is the state machine's
    /// answer (a refusal arrives as `CoreError::Refused`).
    fn propose(&self, command: Command) -> ProposeFuture<'_>;
}

/// Single-node log: the local redb store, one write transaction per command.
pub struct LocalLog {
    store: Arc<Store>,
}

impl LocalLog {
    pub fn new(store: Arc<Store>) -> LocalLog {
        LocalLog { store }
    }
}

impl CommandLog for LocalLog {
    fn propose(&self, command: Command) -> ProposeFuture<'_> {
        let store = self.store.clone();
        Box::pin(async move {
            let label = command.label();
            // redb writes block (fsync): keep them off the async workers.
            let (index, result) =
                tokio::task::spawn_blocking(move || store.append_and_apply(&command))
                    .await
                    .map_err(|e| CoreError::Internal(format!("apply task failed: {e}")))??;
            tracing::debug!(index, command = label, ok = result.is_ok(), "applied");
            Ok(result?)
        })
    }
}
