//! Shares read-index rounds among concurrent readers on one node.
//!
//! Every linearizable read needs a read index taken *after* the read arrived. Readers that
//! arrive while a round is in flight cannot use that round's answer (it may predate them), but
//! they can all share the *next* one: the first of them opens a batch, the others join it, and
//! the batch runs as soon as the round in flight finishes. Under load this turns N concurrent
//! read-index rounds (each a quorum heartbeat, plus an RPC from a follower) into at most two:
//! one in flight and one filling up.

use crate::types::LogId;
use keystead_core::CoreError;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

type RoundResult = Result<Option<LogId>, String>;

/// One round's outcome, shared by the readers that joined it.
#[derive(Default)]
struct Batch {
    result: Mutex<Option<RoundResult>>,
    done: Notify,
}

impl Batch {
    fn finish(&self, result: RoundResult) {
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(result);
        }
        self.done.notify_waiters();
    }

    async fn wait(&self) -> RoundResult {
        loop {
            // Registered before the check, so a `finish` in between is not missed.
            let done = self.done.notified();
            match self.result.lock() {
                Ok(slot) => {
                    if let Some(result) = slot.as_ref() {
                        return result.clone();
                    }
                }
                Err(_) => return Err("read batch poisoned".into()),
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

impl ReadBatcher {
    /// The read index for a reader arriving now: from a round that starts no earlier than now.
    pub(crate) async fn read_index<F, Fut>(&self, round: F) -> Result<Option<LogId>, CoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<LogId>, CoreError>>,
    {
        let poisoned = || CoreError::Internal("read batcher poisoned".into());
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
            // The reader that opened the batch runs its round once the one in flight is done;
            // from then on nobody can join it.
            loop {
                let turn = self.turn.notified();
                {
                    let mut state = self.state.lock().map_err(|_| poisoned())?;
                    if !state.in_flight {
                        state.in_flight = true;
                        state.open = None;
                        break;
                    }
                }
                turn.await;
            }
            let result = round().await.map_err(|e| e.to_string());
            batch.finish(result);
            self.state.lock().map_err(|_| poisoned())?.in_flight = false;
            self.turn.notify_waiters();
        }
        batch.wait().await.map_err(CoreError::Unavailable)
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
}
