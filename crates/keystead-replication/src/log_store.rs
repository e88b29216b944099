//! The Raft log and vote, persisted in the node's Raft log file (`keystead_store::RaftLogFile`,
//! beside the state's file). Entries are JSON (ciphertext inside commands stays base64-encoded
//! ciphertext). Every log write and the vote commit with fsync before openraft is told it is
//! done; the committed position, a hint, is written with the next append (see
//! `save_committed`). Opening the log reconciles it with the state file ([`LogStore::open`]).

use crate::early_append::EarlyAppend;
use crate::io_error;
use crate::state_machine::StateMachine;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use keystead_store::{RaftLogFile, Store};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogId, RaftLogReader, StorageIOError};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
/// Also written by the state machine, which purges the log a snapshot covers as it installs it.
pub(crate) const LAST_PURGED: &str = "last_purged";

/// The committed position is written with every this-many-th append. Writing it touches a second
/// table in the append's commit, which costs about 8 % of a log append (20-25 µs on the bench
/// machine's disk); being a hint, it may lag.
const COMMITTED_HINT_EVERY: u64 = 64;

/// Entries totalling at most this many bytes are decoded on the async worker when they come
/// from the log's in-memory tail (a few microseconds per kilobyte); more go to a blocking thread.
const DECODE_INLINE_BYTES: usize = 64 * 1024;

/// The Raft log's file in a node's data directory, beside the state's `keystead.redb`.
pub const LOG_FILE: &str = "raft-log.redb";

/// Opens the Raft log file of the node whose data directory is `data_dir` and whose state is
/// `state` (moving a log that an earlier version kept in the state file into it).
pub fn open_log_file(data_dir: &Path, state: &Store) -> Result<Arc<RaftLogFile>, String> {
    let path = data_dir.join(LOG_FILE);
    RaftLogFile::open(&path, state, &[crate::state_machine::APPLIED])
        .map(Arc::new)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

#[derive(Clone)]
pub struct LogStore {
    log: Arc<RaftLogFile>,
    /// The state file, which a purge makes durable first (see `purge`).
    state: Arc<Store>,
    /// The committed position openraft saved last, written with an append now and then.
    committed: Arc<Mutex<Option<LogId>>>,
    /// Appends so far (when to write the committed position).
    appends: Arc<AtomicU64>,
    /// The vote as last saved (or read at start-up): whether an append is this node's own, as
    /// leader, for early appends.
    vote: Arc<Mutex<Option<Vote>>>,
    /// Sends the leader's new entries to the followers as its append starts
    /// (`early_append.rs`); none in the storage conformance suite.
    early: Option<Arc<EarlyAppend>>,
}

impl LogStore {
    /// Opens the log over its file and the node's state, after reconciling the two.
    ///
    /// The state file commits applies without fsync and the log file purges only what the
    /// state has made durable, so normally the log holds every entry after the state's
    /// applied position, and agrees with the state at that position. Installing a snapshot is
    /// the exception: it commits the state, then purges the log. A crash in between leaves a
    /// state ahead of the log's purge point, and a log that may hold, at or before the
    /// snapshot's last entry, entries of another leader's history (a follower receives a
    /// snapshot when its log did not match). If the log's entry at the applied position is
    /// not the one the state applied, no entry in the log is known to be committed (Raft's log
    /// matching: an entry that differs at one index differs at every later one too), so the
    /// log is emptied and purged to the applied position, and Raft refills it from the leader.
    /// A state that has applied nothing beside a purged log (a new node's first snapshot,
    /// interrupted) gets an empty log with no purge point.
    ///
    /// Then the log must run without a hole to its last entry. A follower gets one when it
    /// accepts entries that follow a snapshot before the snapshot's install has committed
    /// (openraft counts the snapshot's last entry as held as soon as it hands the snapshot to
    /// the state machine, and early appends reach a follower whatever its replication is
    /// doing) and then crashes before the install commits: its log keeps its old entries and
    /// the new ones, with the snapshot's between them missing. A leader reading across that
    /// hole would send entries that do not follow the previous entry it names. The entries
    /// after the hole were never acknowledged to the leader (openraft's replication to the
    /// follower waits for the install's answer, and an early append's answer counts for
    /// nothing), so they are cut off, and Raft sends them again. Last, a committed-position
    /// hint the log no longer holds (written with one of those entries) is dropped: openraft
    /// re-applies the log up to the hint at start-up.
    pub fn open(log: Arc<RaftLogFile>, state: Arc<Store>) -> Result<LogStore, StorageError> {
        let (applied, _) = StateMachine::applied(&state)?;
        LogStore::reconcile_with_state(&log, applied)?;
        LogStore::cut_at_hole(&log)?;
        LogStore::check_committed_hint(&log, applied)?;
        Ok(LogStore {
            log,
            state,
            committed: Arc::new(Mutex::new(None)),
            appends: Arc::new(AtomicU64::new(0)),
            vote: Arc::new(Mutex::new(None)),
            early: None,
        })
    }

    /// Empties a log that disagrees with the installed snapshot (see [`LogStore::open`]).
    fn reconcile_with_state(log: &RaftLogFile, applied: Option<LogId>) -> Result<(), StorageError> {
        let Some(applied) = applied else {
            // A node that has applied nothing has no purged log, unless openraft purged it for
            // the node's first snapshot (it asks for that purge before the install runs, and
            // the rule that a purge stops at the state's applied position has nothing to stop
            // at) and a crash interrupted the install. The entries after the purge point were
            // accepted only by early appends, whose answers count for nothing (openraft's
            // replication waits for the install's answer), so the log starts over, empty.
            let purged: Option<Option<LogId>> = LogStore::meta(log, LAST_PURGED)?;
            if let Some(purged) = purged.flatten() {
                log.clear(LAST_PURGED)
                    .map_err(|e| io_error(StorageIOError::write_logs, e))?;
                tracing::warn!(
                    purged = purged.index,
                    "the Raft log was purged for a snapshot whose install a crash interrupted, on a node that had applied nothing: emptied it"
                );
            }
            return Ok(());
        };
        let purged: Option<LogId> = LogStore::meta(log, LAST_PURGED)?;
        if purged.is_none_or(|purged| purged.index < applied.index)
            && !LogStore::holds(log, applied)?
        {
            let bytes = serde_json::to_vec(&Some(applied))
                .map_err(|e| io_error(StorageIOError::write_logs, e))?;
            log.reset_to(applied.index, LAST_PURGED, &bytes)
                .map_err(|e| io_error(StorageIOError::write_logs, e))?;
            tracing::warn!(
                applied = applied.index,
                "the Raft log disagreed with the installed snapshot (a crash during its install): emptied it"
            );
        }
        Ok(())
    }

    /// Cuts the log at its first hole, if it has one (see [`LogStore::open`]).
    fn cut_at_hole(log: &RaftLogFile) -> Result<(), StorageError> {
        let hole = log
            .first_gap()
            .map_err(|e| io_error(StorageIOError::read_logs, e))?;
        if let Some(hole) = hole {
            log.truncate(hole)
                .map_err(|e| io_error(StorageIOError::write_logs, e))?;
            tracing::warn!(
                missing = hole,
                "the Raft log had entries after a hole (entries that followed a snapshot whose install a crash interrupted): cut them off"
            );
        }
        Ok(())
    }

    /// Drops a committed-position hint past the applied position that names an entry the log
    /// does not hold (see [`LogStore::open`]).
    fn check_committed_hint(log: &RaftLogFile, applied: Option<LogId>) -> Result<(), StorageError> {
        let Some(hint) = LogStore::meta::<Option<LogId>>(log, COMMITTED)?.flatten() else {
            return Ok(());
        };
        if applied.is_some_and(|applied| applied.index >= hint.index) {
            return Ok(());
        }
        if !LogStore::holds(log, hint)? {
            let none = serde_json::to_vec(&None::<LogId>)
                .map_err(|e| io_error(StorageIOError::write_logs, e))?;
            log.meta_put(COMMITTED, &none)
                .map_err(|e| io_error(StorageIOError::write_logs, e))?;
            tracing::warn!(
                hint = hint.index,
                "the committed-position hint named an entry the Raft log does not hold: dropped it"
            );
        }
        Ok(())
    }

    /// Whether the log holds the entry `id` (an entry at its index with that log id).
    fn holds(log: &RaftLogFile, id: LogId) -> Result<bool, StorageError> {
        match log
            .get(id.index)
            .map_err(|e| io_error(StorageIOError::read_logs, e))?
        {
            Some(bytes) => Ok(LogStore::decode(&bytes)?.log_id == id),
            None => Ok(false),
        }
    }

    /// Sends this node's appends as leader early to the followers (`early_append.rs`).
    pub fn with_early_append(mut self, early: Arc<EarlyAppend>) -> LogStore {
        self.early = Some(early);
        self
    }

    /// Starts an early append of `entries` if this node appends them as leader and the entry
    /// before them is in the log's in-memory tail (its log id is the request's previous entry:
    /// exactly what this leader's log holds there, as openraft's own replication would send).
    fn send_early(&self, entries: Vec<Entry>) -> bool {
        let Some(early) = &self.early else {
            return false;
        };
        let Some(vote) = *self.vote.lock().unwrap_or_else(PoisonError::into_inner) else {
            return false;
        };
        if !early.leads_for(&vote, &entries) {
            return false;
        }
        let Some(prev_index) = entries[0].log_id.index.checked_sub(1) else {
            return false;
        };
        let Some(rows) = self.log.recent_range(
            Bound::Included(prev_index),
            Bound::Included(prev_index),
            usize::MAX,
        ) else {
            return false;
        };
        let Some(Ok(prev)) = rows
            .first()
            .map(|(_, bytes)| LogStore::decode_log_id(bytes))
        else {
            return false;
        };
        early.send(vote, prev, entries)
    }

    /// The log id of an encoded entry, without decoding its payload.
    fn decode_log_id(bytes: &[u8]) -> Result<LogId, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Head {
            log_id: LogId,
        }
        serde_json::from_slice::<Head>(bytes).map(|head| head.log_id)
    }

    /// Runs blocking redb work without stalling the runtime (`blocking.rs`).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&RaftLogFile, &Store) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (log, state) = (self.log.clone(), self.state.clone());
        crate::blocking::run_blocking(move || work(&log, &state))
            .await
            .map_err(|e| io_error(StorageIOError::read, e))?
    }

    fn meta<T: serde::de::DeserializeOwned>(
        log: &RaftLogFile,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        match log
            .meta_get(key)
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

    /// Decodes `(index, entry)` rows, as the log file and its in-memory tail give them.
    fn decode_rows(rows: &[(u64, Vec<u8>)]) -> Result<Vec<Entry>, StorageError> {
        rows.iter()
            .map(|(_, bytes)| LogStore::decode(bytes))
            .collect()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        // What the leader has just appended is still in memory: decode it here rather than
        // paying a blocking-thread hop between its fsync and the append-entries message.
        if let Some(rows) = self.log.recent_range(start, end, DECODE_INLINE_BYTES) {
            return LogStore::decode_rows(&rows);
        }
        self.blocking(move |log, _| {
            let rows = log
                .range(start, end)
                .map_err(|e| io_error(StorageIOError::read_logs, e))?;
            LogStore::decode_rows(&rows)
        })
        .await
    }

    /// What openraft's replication sends as the entries that follow the entry before `start`:
    /// so only entries that begin at `start` and run without a hole, or a follower would
    /// append them at indexes its log does not reach, leaving a hole in its own log (openraft's
    /// debug build asserts on such a request; a release build does not check). A read can find
    /// `start` gone: a replication task of a node that has just stopped leading makes one last
    /// read, and the node, now a follower, purges its log without regard to it (only a leader
    /// keeps what its replication still needs). The simulation found that request, sent under
    /// the old term to a follower that had not yet heard of the new one. Such a read gives the
    /// entries up to the first missing one, or none (openraft then sends a heartbeat).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut entries = self.try_get_log_entries(start..end).await?;
        let consecutive = entries
            .iter()
            .zip(start..)
            .take_while(|(entry, index)| entry.log_id.index == *index)
            .count();
        if consecutive < entries.len() {
            tracing::warn!(
                start,
                end,
                missing = start.saturating_add(consecutive as u64),
                "a replication read found the Raft log purged under it (a node that has just stopped leading): sending only what precedes the missing entry"
            );
            entries.truncate(consecutive);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|log, _| {
            let last_purged: Option<LogId> = LogStore::meta(log, LAST_PURGED)?;
            let last = match log
                .last()
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
        self.blocking(move |log, _| {
            log.meta_put(VOTE, &bytes)
                .map_err(|e| io_error(StorageIOError::write_vote, e))
        })
        .await?;
        *self.vote.lock().unwrap_or_else(PoisonError::into_inner) = Some(*vote);
        Ok(())
    }

    /// The saved vote, with its `committed` flag cleared. openraft 0.9 reads the vote once, at
    /// start-up, and a node whose saved vote is a committed one for itself starts up as the
    /// leader again, with no election and no new blank entry. Its committed position then comes
    /// from the hint, which may lag what it committed (and acknowledged) before it stopped, and
    /// openraft's read index (the term's first entry, or the committed position if later), like
    /// the leader lease's, would let reads miss acknowledged writes until replication catches
    /// up: the simulation's read check found exactly that after whole-cluster power losses.
    /// Uncommitted, the vote still binds this node in its term (it grants no other candidate a
    /// vote it would not have granted before: a vote's order compares leaders first), but the
    /// node starts as a follower and leads again only through an election, whose blank entry
    /// makes every read index cover everything committed before.
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let vote: Option<Vote> = self.blocking(|log, _| LogStore::meta(log, VOTE)).await?;
        let vote = vote.map(|mut vote| {
            vote.committed = false;
            vote
        });
        *self.vote.lock().unwrap_or_else(PoisonError::into_inner) = vote;
        Ok(vote)
    }

    /// openraft calls this before every apply, on the leader between commit and answer and on
    /// a follower before its next append. The value is a hint: a node that restarts with an
    /// older one re-learns the rest from the leader, or, alone, by committing its first entry
    /// as leader. So it costs no I/O here, in the path of every write; it is kept in memory and
    /// written with every `COMMITTED_HINT_EVERY`-th append.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let saved = *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if saved.is_some() {
            return Ok(saved);
        }
        self.blocking(|log, _| Ok(LogStore::meta::<Option<LogId>>(log, COMMITTED)?.flatten()))
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut rows = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes =
                serde_json::to_vec(entry).map_err(|e| io_error(StorageIOError::write_logs, e))?;
            rows.push((entry.get_log_id().index, bytes));
        }
        // Before this node's own fsync, so the followers' run beside it. The yield lets the
        // sends leave now: the append's fsync runs on this worker thread (`blocking.rs`), and
        // a task just spawned here would otherwise wait for it (tokio's LIFO slot is not
        // stolen by the other workers).
        if self.send_early(entries) {
            tokio::task::yield_now().await;
        }
        let write_hint = self
            .appends
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(COMMITTED_HINT_EVERY);
        let committed: Option<LogId> = match write_hint {
            true => *self
                .committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            false => None,
        };
        let committed = committed
            .map(|id| serde_json::to_vec(&Some(id)))
            .transpose()
            .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        let result = self
            .blocking(move |log, _| {
                let hint: Vec<(&str, &[u8])> = committed
                    .iter()
                    .map(|bytes| (COMMITTED, bytes.as_slice()))
                    .collect();
                log.append(&rows, &hint)
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
        self.blocking(move |log, _| {
            log.truncate(log_id.index)
                .map_err(|e| io_error(StorageIOError::write_logs, e))
        })
        .await
    }

    /// Purges only what the state machine has applied and made durable (the purge syncs the
    /// state file first). On a follower, openraft asks for the purge of the log a snapshot covers
    /// as soon as it hands the snapshot to the state machine, before the install is done: that
    /// purge is skipped, and the install purges the log itself once the state it installs is
    /// durable (see `keystead_store::RaftLogFile::install_snapshot`). Purging first would leave,
    /// after a crash in between, a log purged past a state machine that never got the snapshot,
    /// and a node that cannot restart.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&Some(log_id))
            .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        self.blocking(move |log, state| {
            log.purge(state, log_id.index, LAST_PURGED, &bytes)
                .map(|_purged| ())
                .map_err(|e| io_error(StorageIOError::write_logs, e))
        })
        .await
    }
}
