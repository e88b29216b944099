//! The retention timer: soft-deleted objects whose scheduled purge date has passed are purged
//! by proposing `PurgeExpired` (timers propose; replicas never act on their own clocks).

use crate::{CoreError, Node};
use keystead_model::{Applied, Command};
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Proposes one `PurgeExpired` if anything is due. Returns how many objects were purged.
    pub async fn purge_expired_now(&self) -> Result<u64, CoreError> {
        let now = self.now();
        let due = self
            .read()?
            .earliest_purge_date()?
            .is_some_and(|d| d <= now);
        if !due {
            return Ok(0);
        }
        match self.propose(Command::PurgeExpired { at: now }).await? {
            Applied::Purged { count } => Ok(count),
            _ => Ok(0),
        }
    }
}

/// Runs the retention timer forever, checking every `every`.
pub async fn run(node: Arc<Node>, every: Duration) {
    crate::timer::run_every(node, every, "retention purge", |node| async move {
        let count = node.purge_expired_now().await?;
        if count > 0 {
            tracing::info!(count, "purged objects whose retention ended");
        }
        Ok(())
    })
    .await
}
