//! Running the storage's blocking work (redb transactions, fsync) from openraft's tasks.
//!
//! A log append and an apply are in the path of every write, and openraft's task waits for
//! each. `spawn_blocking` puts two thread wake-ups in that path: the blocking thread's, then the
//! waiting task's when the work is done. On the bench machine's two busy cores that cost a lone
//! write 0.12–0.2 ms of its 1.7–1.9 (8 alternating A/B rounds, `docs/benchmarks.md`);
//! `block_in_place` gained nothing measurable. So on the server's multi-threaded runtime the
//! work runs right on the calling task's thread. That thread is busy for the work's length (an
//! fsync, a fraction of a millisecond here); the runtime's other worker threads keep running and
//! take over its queued tasks. On a current-thread runtime (unit tests, the simulation), running
//! inline would stop every task, so the work goes to `spawn_blocking` there.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, which blocks: on the calling thread when other worker threads can run the
/// runtime's other tasks meanwhile, else on a blocking thread.
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    match Handle::current().runtime_flavor() {
        RuntimeFlavor::MultiThread => Ok(work()),
        _ => tokio::task::spawn_blocking(work).await,
    }
}
