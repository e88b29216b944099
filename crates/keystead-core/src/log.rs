//! The seam between operations and durability. A `CommandLog` takes a command, makes it
//! durable, applies it and returns what applying produced. Single-node mode uses
//! [`LocalLog`] (append + apply + fsync in one redb transaction, group-committed by a single
//! writer thread); the replicated modes plug in a Raft-backed implementation with the same
//! contract.

use crate::CoreError;
use keystead_model::{Applied, Command};
use keystead_store::{ApplyResult, Store};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::thread;
use tokio::sync::oneshot;

pub type ProposeFuture<'a> = Pin<Box<dyn Future<Output = Result<Applied, CoreError>> + Send + 'a>>;

pub type BarrierFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CoreError>> + Send + 'a>>;

pub trait CommandLog: Send + Sync {
    /// Returns only once the command is durable and applied; the result is the state machine's
    /// answer (a refusal arrives as `CoreError::Refused`).
    fn propose(&self, command: Command) -> ProposeFuture<'_>;

    /// Resolves once the local state machine reflects every write acknowledged before the call
    /// (a linearizable read point). A single node is always up to date.
    fn read_barrier(&self) -> BarrierFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// Whether this node's background timers (retention, key rotation) should propose now: in a
    /// cluster only the leader's, in a multi-region deployment only the primary region's. The
    /// commands are idempotent, so more proposers would be harmless, but not free.
    fn runs_timers(&self) -> bool {
        true
    }
}

/// Most commands one group commit takes. Bounds the size of one redb transaction and how long
/// the first caller of a large batch waits behind the others' apply work.
const MAX_BATCH: usize = 256;

/// One proposal waiting for the writer: the command and where its outcome goes.
struct Request {
    command: Command,
    reply: oneshot::Sender<Result<(u64, ApplyResult), CoreError>>,
}

/// Single-node log: the local redb store, written by one dedicated thread that group-commits.
///
/// Every `propose` queues its command; the writer takes everything waiting (up to
/// [`MAX_BATCH`]) and makes it durable with one transaction and one fsync
/// (`Store::append_and_apply_batch`), then answers each caller with its own outcome. While a
/// batch commits, new proposals pile up and form the next batch, so the fsync cost is shared
/// under concurrency without any timer: a lone writer's command is committed as soon as the
/// writer sees it.
pub struct LocalLog {
    /// `None` only while dropping (closing the queue is what stops the writer).
    queue: Option<mpsc::Sender<Request>>,
    writer: Option<thread::JoinHandle<()>>,
}

impl LocalLog {
    pub fn new(store: Arc<Store>) -> LocalLog {
        let (queue, requests) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("keystead-log-writer".into())
            .spawn(move || run_writer(&store, &requests));
        let writer = match writer {
            Ok(handle) => Some(handle),
            Err(e) => {
                // The receiver went down with the closure, so every propose fails with an
                // internal error instead of hanging; say why once, here.
                tracing::error!(error = %e, "could not start the log writer thread");
                None
            }
        };
        LocalLog {
            queue: Some(queue),
            writer,
        }
    }
}

impl Drop for LocalLog {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit; joining makes sure
        // it has released the store (and its file) when the log is gone.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the log writer thread panicked");
            }
        }
    }
}

impl CommandLog for LocalLog {
    fn propose(&self, command: Command) -> ProposeFuture<'_> {
        Box::pin(async move {
            let label = command.label();
            let stopped = || CoreError::Internal("the log writer is not running".into());
            let (reply, outcome) = oneshot::channel();
            self.queue
                .as_ref()
                .ok_or_else(stopped)?
                .send(Request { command, reply })
                .map_err(|_| stopped())?;
            // The writer answers only after the batch holding this command has committed.
            let (index, result) = outcome.await.map_err(|_| stopped())??;
            tracing::debug!(index, command = label, ok = result.is_ok(), "applied");
            Ok(result?)
        })
    }
}

/// The writer loop: blocks for the first waiting request, drains whatever else is already
/// queued, commits it all at once. Ends when the queue is closed and empty.
fn run_writer(store: &Store, requests: &mpsc::Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        // Only what is already waiting: never wait for more, so one writer adds no latency.
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|r| (r.command, r.reply)).unzip();
        tracing::trace!(commands = commands.len(), "group commit");
        // A panic inside redb must not take the writer (and so every later write) down with it:
        // the transaction is dropped uncommitted while unwinding, so the store stays at its last
        // commit and this batch fails like a storage error.
        let outcome =
            panic::catch_unwind(AssertUnwindSafe(|| store.append_and_apply_batch(&commands)));
        match outcome {
            Ok(Ok(results)) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that gave up no longer listens; its command is durable anyway.
                    let _ = reply.send(Ok(result));
                }
            }
            Ok(Err(e)) => {
                // The batch did not commit, or its commit failed and its durability is unknown:
                // no caller in it may be told its write is durable, so every one gets the error.
                let message = format!("committing the log: {e}");
                for reply in replies {
                    let _ = reply.send(Err(CoreError::Internal(message.clone())));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err(CoreError::Internal(
                        "the log writer panicked while committing".into(),
                    )));
                }
            }
        }
    }
}
