//! Keystead's storage seam: one redb database per node holding the durable command log and the
//! state machine tables that applying the log produces.
//!
//! The store sees only ciphertext: secret values and key material arrive already sealed inside
//! commands. Layout and commit protocol are described in `docs/storage.md`.

mod apply;
mod codec;
pub mod error;
mod raft;
mod read;
mod tables;

pub use error::StoreError;
pub use raft::ReplicatedEntry;
pub use read::{Page, ReadView};

use keystead_model::{Applied, ApplyError, Command};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
}

impl Store {
    /// Opens (or creates) the database at `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        tables::create_all(&txn)?;
        txn.commit()?;
        Ok(Store { db })
    }

    /// Single-node commit path: appends `command` to the log and applies it in the same write
    /// transaction, committed with fsync before returning. A crash before the commit loses both,
    /// after it keeps both: the log and the state machine never disagree.
    pub fn append_and_apply(&self, command: &Command) -> Result<(u64, ApplyResult), StoreError> {
        let txn = self.db.begin_write()?;
        let index = {
            let mut log = txn.open_table(tables::LOG)?;
            let last = log.last()?.map(|(k, _)| k.value()).unwrap_or(0);
            let index = last + 1;
            let entry = LogEntry {
                index,
                term: 0,
                command: command.clone(),
            };
            log.insert(index, codec::encode(&entry)?.as_slice())?;
            index
        };
        let result = apply::apply(&txn, index, command)?;
        txn.commit()?;
        Ok((index, result))
    }

    /// Applies an entry that was made durable elsewhere (the replicated log). Idempotent: an
    /// entry at or below the last applied index is skipped.
    pub fn apply_entry(&self, entry: &LogEntry) -> Result<Option<ApplyResult>, StoreError> {
        let txn = self.db.begin_write()?;
        if tables::last_applied(&txn)? >= entry.index {
            return Ok(None);
        }
        let result = apply::apply(&txn, entry.index, &entry.command)?;
        txn.commit()?;
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

#[cfg(test)]
mod tests;
