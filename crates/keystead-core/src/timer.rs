//! The one loop every background timer runs: tick at a fixed period, act only on the node that
//! runs timers (the Raft leader, or the single node), and log a failed tick without stopping.
//!
//! Timers only propose commands; see `retention` and `rotation` for what each one proposes.

use crate::{CoreError, Node};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs `tick` every `every`, forever, while this node runs timers. `what` names the timer in
/// the warning a failed tick logs.
pub async fn run_every<F, Fut>(node: Arc<Node>, every: Duration, what: &'static str, tick: F)
where
    F: Fn(Arc<Node>) -> Fut,
    Fut: Future<Output = Result<(), CoreError>>,
{
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if !node.runs_timers() {
            continue;
        }
        if let Err(e) = tick(node.clone()).await {
            tracing::warn!(error = %e, timer = what, "timer tick failed");
        }
    }
}
