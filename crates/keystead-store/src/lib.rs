//! Keystead's storage seam: the redb databases of a node. `Store` is the state machine's tables
//! (and, in single-node mode, the durable command log beside them); a cluster node keeps its
//! Raft log in a second file, `RaftLogFile`.
//!
//! The store sees only ciphertext: secret values and key material arrive already sealed inside
//! commands. Layout and commit protocol are described in `docs/storage.md`.

mod apply;
mod codec;
pub mod error;
mod raft;
mod raft_log;
mod raft_log_tail;
mod read;
mod region;
#[cfg(any(test, feature = "sim"))]
pub mod sim_disk;
mod tables;

pub use error::StoreError;
pub use raft::{ReplicatedEntry, STATE_SYNC_EVERY};
pub use raft_log::{RaftLogFile, SnapshotPoint};
pub use read::{Page, ReadView};
pub use region::RegionSnapshot;

use keystead_model::{Applied, ApplyError, Command};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One log entry: the position, the term of the leader that proposed it (0 in single-node
/// mode) and the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub index: u64,
    pub term: u64,
    pub command: Command,
}

/// The outcome of one applied command: the state machine's answer, which may be a
/// deterministic refusal (the state is then unchanged).
pub type ApplyResult = Result<Applied, ApplyError>;

pub struct Store {
    db: Database,
    /// Replicated applies committed without fsync since the last durable commit (`raft.rs`).
    applies_since_sync: AtomicU32,
    /// Bumped after every write transaction on the state, once its changes are visible: a
    /// value remembered from a read made after loading the generation is current as long as
    /// the generation has not moved (see [`Store::generation`]).
    generation: AtomicU64,
}

impl Store {
    /// Opens (or creates) the database at `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::set_up(Database::create(path)?)
    }

    /// Opens (or creates) the database on another storage than a file: the simulation tests'
    /// crashable disk (`sim_disk`). Set up exactly as [`Store::open`].
    pub fn open_on(backend: impl redb::StorageBackend) -> Result<Store, StoreError> {
        Store::set_up(Database::builder().create_with_backend(backend)?)
    }

    /// Makes sure every table (and index) exists in a freshly opened database.
    fn set_up(db: Database) -> Result<Store, StoreError> {
        let txn = db.begin_write()?;
        tables::create_all(&txn)?;
        txn.open_table(raft_log::RAFT_META)?;
        txn.commit()?;
        Ok(Store {
            db,
            applies_since_sync: AtomicU32::new(0),
            generation: AtomicU64::new(0),
        })
    }

    /// How many write transactions have ended since the store was opened. Memoizing a decision
    /// read from the state is safe this way: load the generation first, then read; the
    /// decision holds while `generation()` still returns the loaded value. (Every write goes
    /// through [`Store::commit`], which bumps the counter after the commit is visible, so a
    /// read that started before a write's changes were visible sees an older generation.)
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Commits a write transaction on the state, then bumps the generation, whether the commit
    /// succeeded or not (a failed commit may still have changed what readers see).
    fn commit(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        let committed = txn.commit();
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(committed?)
    }

    /// Single-node commit path: appends `command` to the log and applies it in the same write
    /// transaction, committed with fsync before returning. A crash before the commit loses both,
    /// after it keeps both: the log and the state machine never disagree.
    pub fn append_and_apply(&self, command: &Command) -> Result<(u64, ApplyResult), StoreError> {
        let txn = self.db.begin_write()?;
        let index = next_log_index(&txn)?;
        let result = append_one(&txn, index, command)?;
        self.commit(txn)?;
        Ok((index, result))
    }

    /// Group commit: appends `commands` at consecutive log indexes and applies each in order, all
    /// in ONE write transaction with ONE fsync, so concurrent writers share the cost of the
    /// commit. Each command gets its own outcome: a refusal changes nothing (apply decides
    /// refusals before writing), so it cannot affect the commands around it. A storage error
    /// before the commit aborts the whole transaction: none of the commands is then logged or
    /// applied. If the commit itself fails, the outcome of the whole batch is unknown, as for a
    /// single command.
    pub fn append_and_apply_batch(
        &self,
        commands: &[Command],
    ) -> Result<Vec<(u64, ApplyResult)>, StoreError> {
        if commands.is_empty() {
            // Nothing to make durable: do not pay for an empty commit.
            return Ok(Vec::new());
        }
        let txn = self.db.begin_write()?;
        let first = next_log_index(&txn)?;
        let mut results = Vec::with_capacity(commands.len());
        for (index, command) in (first..).zip(commands) {
            results.push((index, append_one(&txn, index, command)?));
        }
        self.commit(txn)?;
        Ok(results)
    }

    /// Applies an entry that was made durable elsewhere (the replicated log). Idempotent: an
    /// entry at or below the last applied index is skipped.
    pub fn apply_entry(&self, entry: &LogEntry) -> Result<Option<ApplyResult>, StoreError> {
        let txn = self.db.begin_write()?;
        if tables::last_applied(&txn)? >= entry.index {
            return Ok(None);
        }
        let result = apply::apply(&txn, entry.index, &entry.command)?;
        self.commit(txn)?;
        Ok(Some(result))
    }

    /// A consistent read-only view of the state machine (a redb read transaction).
    pub fn read(&self) -> Result<ReadView, StoreError> {
        Ok(ReadView::new(self.db.begin_read()?))
    }

    /// Log entries from `from` (inclusive), at most `limit` of them.
    pub fn log_entries(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(tables::LOG)?;
        let mut out = Vec::new();
        for row in log.range(from..)?.take(limit) {
            let (_, value) = row?;
            out.push(codec::decode(value.value())?);
        }
        Ok(out)
    }
}

/// The index the next appended entry takes: one past the last in `log` (1 on an empty log).
fn next_log_index(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let log = txn.open_table(tables::LOG)?;
    let last = log.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    Ok(last + 1)
}

/// Appends one entry at `index` and applies its command, inside the caller's transaction. The
/// log table is closed again before applying so apply can open whatever tables it needs.
fn append_one(
    txn: &WriteTransaction,
    index: u64,
    command: &Command,
) -> Result<ApplyResult, StoreError> {
    {
        let mut log = txn.open_table(tables::LOG)?;
        let entry = LogEntry {
            index,
            term: 0,
            command: command.clone(),
        };
        log.insert(index, codec::encode(&entry)?.as_slice())?;
    }
    apply::apply(txn, index, command)
}

#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod raft_log_tests;
#[cfg(test)]
mod region_tests;
#[cfg(test)]
mod tests;
