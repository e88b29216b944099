//! Shares read-index rounds among concurrent readers on one node.
//!
//! Every linearizable read needs a read index taken *after* the read arrived. Readers that
//! arrive while a round is in flight cannot use that round's answer (it may predate them), but
//! they can all share the *next* one: the first of them opens a batch, the others join it, and
//! the batch runs as soon as the round in flight finishes. Under load this turns N concurrent
//! read-index rounds (each a quorum heartbeat, plus an RPC from a follower) into at most two:
//! one in flight and one filling up.
//!
//! A node has two: `RaftLog`'s, for its own readers (whose round, on a follower, is a request
//! to the leader), and the leader's, whose rounds are the heartbeats themselves, shared by the
//! leader's readers and by every follower's request (`peer::read_index_shared`).
//!
//! Cancel-safe: a reader's future may be dropped at any `.await` (its client hung up); see
//! `RoundGuard`.

use crate::types::LogId;
use keystead_core::CoreError;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What a round gave its batch.
#[derive(Clone)]
enum Outcome {
    Index(Option<LogId>),
    Failed(String),
    /// The reader running the round went away before it finished (its request was cancelled,
    /// e.g. the client disconnected). The batch's other readers start over.
    Abandoned,
}

/// How often a reader starts over after abandoned rounds before it gives up with a 503. Each
/// restart needs another reader to have been cancelled, so this bounds a pathological case only.
const MAX_ATTEMPTS: usize = 8;

/// One round's outcome, shared by the readers that joined it.
#[derive(Default)]
struct Batch {
    result: Mutex<Option<Outcome>>,
    done: Notify,
}

impl Batch {
    fn finish(&self, outcome: Outcome) {
        if let Ok(mut slot) = self.result.lock() {
            if slot.is_none() {
                *slot = Some(outcome);
            }
        }
        self.done.notify_waiters();
    }

    async fn wait(&self) -> Outcome {
        loop {
            // Registered before the check, so a `finish` in between is not missed.
            let done = self.done.notified();
            match self.result.lock() {
                Ok(slot) => {
                    if let Some(outcome) = slot.as_ref() {
                        return outcome.clone();
                    }
                }
                Err(_) => return Outcome::Failed("read batch poisoned".into()),
            }
            done.await;
        }
    }
}

#[derive(Default)]
struct State {
    /// The batch still accepting readers (its round has not started).
    open: Option<Arc<Batch>>,
    in_flight: bool,
}

#[derive(Default)]
pub(crate) struct ReadBatcher {
    state: Mutex<State>,
    /// Signalled when a round finishes, so the next batch can start.
    turn: Notify,
}

/// Held by the reader that opened a batch until its round has finished. If that reader's
/// future is dropped first (a cancelled request), the drop hands the batcher back: the batch
/// is closed as abandoned and the in-flight slot freed. Without this, one client disconnecting
/// at the wrong moment left `in_flight` set, or an open batch nobody would run, and every later
/// read on the node waited forever.
struct RoundGuard<'a> {
    batcher: &'a ReadBatcher,
    batch: Arc<Batch>,
    in_flight: bool,
    finished: bool,
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut state) = self.batcher.state.lock() {
            if state
                .open
                .as_ref()
                .is_some_and(|open| Arc::ptr_eq(open, &self.batch))
            {
                state.open = None;
            }
            if self.in_flight {
                state.in_flight = false;
            }
        }
        self.batch.finish(Outcome::Abandoned);
        self.batcher.turn.notify_waiters();
    }
}

impl ReadBatcher {
    /// The read index for a reader arriving now: from a round that starts no earlier than now.
    /// Cancel-safe: dropping the returned future at any point leaves the batcher usable.
    pub(crate) async fn read_index<F, Fut>(&self, round: F) -> Result<Option<LogId>, CoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<LogId>, CoreError>>,
    {
        let poisoned = || CoreError::Internal("read batcher poisoned".into());
        for _ in 0..MAX_ATTEMPTS {
            let (batch, opened) = {
                let mut state = self.state.lock().map_err(|_| poisoned())?;
                match &state.open {
                    Some(batch) => (batch.clone(), false),
                    None => {
                        let batch = Arc::new(Batch::default());
                        state.open = Some(batch.clone());
                        (batch, true)
                    }
                }
            };
            if opened {
                self.run_round(batch.clone(), &round).await?;
            }
            match batch.wait().await {
                Outcome::Index(index) => return Ok(index),
                Outcome::Failed(e) => return Err(CoreError::Unavailable(e)),
                // Arrived before the abandoned round would have started: a new round started
                // from here is still after our arrival.
                Outcome::Abandoned => continue,
            }
        }
        Err(CoreError::Unavailable(
            "read-index rounds kept being abandoned".into(),
        ))
    }

    /// The opener's part: waits for the round in flight to finish, closes the batch to new
    /// readers, runs the round and publishes its outcome.
    async fn run_round<F, Fut>(&self, batch: Arc<Batch>, round: &F) -> Result<(), CoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<LogId>, CoreError>>,
    {
        let poisoned = || CoreError::Internal("read batcher poisoned".into());
        let mut guard = RoundGuard {
            batcher: self,
            batch,
            in_flight: false,
            finished: false,
        };
        // From the moment `in_flight` is ours, nobody can join the batch.
        loop {
            let turn = self.turn.notified();
            {
                let mut state = self.state.lock().map_err(|_| poisoned())?;
                if !state.in_flight {
                    state.in_flight = true;
                    state.open = None;
                    guard.in_flight = true;
                    break;
                }
            }
            turn.await;
        }
        let outcome = match round().await {
            Ok(index) => Outcome::Index(index),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        guard.batch.finish(outcome);
        self.state.lock().map_err(|_| poisoned())?.in_flight = false;
        guard.finished = true;
        self.turn.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_readers_share_rounds_and_never_use_an_earlier_one() {
        let batcher = Arc::new(ReadBatcher::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let batcher = batcher.clone();
            let rounds = rounds.clone();
            tasks.push(tokio::spawn(async move {
                let arrived = rounds.load(Ordering::SeqCst);
                let index = batcher
                    .read_index(|| async {
                        // A round's "index" is the number of rounds started before it.
                        let started = rounds.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok(Some(LogId::new(
                            openraft::CommittedLeaderId::new(1, 1),
                            started,
                        )))
                    })
                    .await
                    .unwrap()
                    .unwrap();
                // The round answering this reader started after the reader arrived.
                assert!(index.index >= arrived);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert!(rounds.load(Ordering::SeqCst) < 50, "rounds were shared");
    }

    /// A reader whose request is cancelled while it runs a round (or waits to run one) must not
    /// wedge the node's reads: the others start a new round.
    #[tokio::test]
    async fn a_cancelled_reader_does_not_wedge_the_others() {
        let batcher = Arc::new(ReadBatcher::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let round = |rounds: Arc<AtomicU64>| {
            move || {
                let rounds = rounds.clone();
                async move {
                    let started = rounds.fetch_add(1, Ordering::SeqCst);
                    if started == 0 {
                        // The first round never answers (a stuck leader RPC, say).
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok(Some(LogId::new(
                        openraft::CommittedLeaderId::new(1, 1),
                        started,
                    )))
                }
            }
        };
        // The first reader opens a batch and runs the stuck round; the second waits to open
        // the next one; the third joins that batch.
        let first = {
            let (batcher, rounds) = (batcher.clone(), rounds.clone());
            tokio::spawn(async move { batcher.read_index(round(rounds)).await })
        };
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let second = {
            let (batcher, rounds) = (batcher.clone(), rounds.clone());
            tokio::spawn(async move { batcher.read_index(round(rounds)).await })
        };
        let third = {
            let (batcher, rounds) = (batcher.clone(), rounds.clone());
            tokio::spawn(async move { batcher.read_index(round(rounds)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Cancel the stuck reader, then also the one waiting for its turn.
        first.abort();
        second.abort();
        let answer = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third reader is not wedged")
            .expect("task")
            .expect("read index");
        assert!(answer.expect("an index").index >= 1);
        // And a reader arriving afterwards gets its own, later round.
        let later = tokio::time::timeout(Duration::from_secs(5), batcher.read_index(round(rounds)))
            .await
            .expect("a later reader is not wedged")
            .expect("read index");
        assert!(later.expect("an index").index >= 2);
    }
}
