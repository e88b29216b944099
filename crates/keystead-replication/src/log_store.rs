//! The Raft log and vote, persisted in the node's redb file through `keystead-store`'s raw
//! primitives. Entries are JSON (ciphertext inside commands stays base64-encoded ciphertext).
//! Every log write and the vote commit with fsync before openraft is told it is done; the
//! committed position, a hint, does not (see `save_committed`).

use crate::io_error;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use keystead_store::Store;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogId, RaftLogReader, StorageIOError};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
/// Also written by the state machine, which purges the log a snapshot covers as it installs it.
pub(crate) const LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
}

impl LogStore {
    pub fn new(store: Arc<Store>) -> LogStore {
        LogStore { store }
    }

    /// Runs blocking redb work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| io_error(StorageIOError::read, e))?
    }

    fn meta<T: serde::de::DeserializeOwned>(
        store: &Store,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        match store
            .raft_meta_get(key)
            .map_err(|e| io_error(StorageIOError::read, e))?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io_error(StorageIOError::read, e)),
            None => Ok(None),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Entry, StorageError> {
        serde_json::from_slice(bytes).map_err(|e| io_error(StorageIOError::read_logs, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        self.blocking(move |store| {
            store
                .raft_log_range(start, end)
                .map_err(|e| io_error(StorageIOError::read_logs, e))?
                .iter()
                .map(|(_, bytes)| LogStore::decode(bytes))
                .collect()
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|store| {
            let last_purged: Option<LogId> = LogStore::meta(store, LAST_PURGED)?;
            let last = match store
                .raft_log_last()
                .map_err(|e| io_error(StorageIOError::read_logs, e))?
            {
                Some(bytes) => Some(*LogStore::decode(&bytes)?.get_log_id()),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes =
            serde_json::to_vec(vote).map_err(|e| io_error(StorageIOError::write_vote, e))?;
        self.blocking(move |store| {
            store
                .raft_meta_put(VOTE, &bytes)
                .map_err(|e| io_error(StorageIOError::write_vote, e))
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|store| LogStore::meta(store, VOTE)).await
    }

    /// openraft calls this before every apply, on the leader between commit and answer and on
    /// a follower before its next append. An fsync here would add one disk flush to every write's
    /// latency on both, for a value that is only a hint (openraft re-learns it), so it is saved
    /// without one.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes =
            serde_json::to_vec(&committed).map_err(|e| io_error(StorageIOError::write, e))?;
        self.blocking(move |store| {
            store
                .raft_meta_put_lazy(COMMITTED, &bytes)
                .map_err(|e| io_error(StorageIOError::write, e))
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|store| Ok(LogStore::meta::<Option<LogId>>(store, COMMITTED)?.flatten()))
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| io_error(StorageIOError::write_logs, e))?;
            rows.push((entry.get_log_id().index, bytes));
        }
        let result = self
            .blocking(move |store| {
                store
                    .raft_log_append(&rows)
                    .map_err(|e| io_error(StorageIOError::write_logs, e))
            })
            .await;
        // Durable (fsync'd) at this point: tell openraft, then report.
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |store| {
            store
                .raft_log_truncate(log_id.index)
                .map_err(|e| io_error(StorageIOError::write_logs, e))
        })
        .await
    }

    /// Purges only what the state machine has applied. On a follower, openraft asks for the
    /// purge of the log a snapshot covers as soon as it hands the snapshot to the state machine,
    /// before the install is done: that purge is skipped, and the install purges the log itself
    /// in the same commit as the state it installs (see `keystead_store::Store::import_state`).
    /// Purging first would leave, after a crash in between, a log purged past a state machine
    /// that never got the snapshot, and a node that cannot restart.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&Some(log_id))
            .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        self.blocking(move |store| {
            store
                .raft_log_purge(log_id.index, LAST_PURGED, &bytes)
                .map(|_purged| ())
                .map_err(|e| io_error(StorageIOError::write_logs, e))
        })
        .await
    }
}
