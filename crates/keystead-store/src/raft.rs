//! The state machine's side of Raft persistence (used by `keystead-replication`, which owns the
//! openraft types and hands us opaque bytes): batched apply of replicated commands, the applied
//! position, and whole-state export/import for snapshots. The log itself is in its own file
//! (`raft_log.rs`, which also holds the rule that ties the two files together).
//!
//! Durability: applying replicated entries commits without fsync. The entries are already
//! durable in the Raft log, the applied position is written in the same transaction as the
//! state it describes, and redb makes a non-durable commit durable with the next durable one —
//! so after a crash the state machine is at some earlier applied position, consistent with it,
//! and Raft re-applies the rest from the log. Every [`STATE_SYNC_EVERY`]-th apply commits
//! durably, because redb reclaims the pages a commit frees only at a durable one (the file would
//! otherwise grow between purges); so does every purge of the log ([`Store::sync_applied`]) and
//! every snapshot install.

use crate::raft_log::{get_index, put_index, LegacyLog, RAFT_LOG, RAFT_META};
use crate::tables;
use crate::{apply, codec, ApplyResult, Store, StoreError};
use keystead_model::Command;
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// The store's own Raft metadata (a big-endian `u64` in `RAFT_META` of the state file): the
/// last index applied to the state machine.
const APPLIED_INDEX: &str = "store:applied_index";

/// Applies between two durable commits of the state file. Each durable commit flushes what the
/// applies since the last one changed (measured: ~1.9 ms after 64 small applies, ~4 ms after
/// 256), and one write in this many pays for it; fewer would put it into the write p99.
pub const STATE_SYNC_EVERY: u32 = 128;

#[derive(Serialize, Deserialize)]
pub(crate) struct StateDump {
    pub(crate) tables: Vec<Vec<(String, Vec<u8>)>>,
}

impl StateDump {
    /// Reads `defs` in full from one transaction.
    pub(crate) fn read(
        txn: &redb::ReadTransaction,
        defs: &[TableDefinition<&str, &[u8]>],
    ) -> Result<StateDump, StoreError> {
        let mut dump = StateDump { tables: Vec::new() };
        for def in defs {
            let table = txn.open_table(*def)?;
            let mut rows = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                rows.push((k.value().to_string(), v.value().to_vec()));
            }
            dump.tables.push(rows);
        }
        Ok(dump)
    }

    /// Replaces the contents of `defs` with the dump's, inside `txn`, and brings them to the
    /// current layout. A dump made by an older version lists fewer tables (the lists only grow
    /// at the end, see `tables::VAULT_TABLES`): the tables it does not have are emptied, and
    /// `upgrade_layout` rebuilds them from the others. A dump with more tables than this
    /// version knows comes from a newer version and is refused.
    pub(crate) fn write(
        &self,
        txn: &redb::WriteTransaction,
        defs: &[TableDefinition<&str, &[u8]>],
    ) -> Result<(), StoreError> {
        if self.tables.len() > defs.len() {
            return Err(StoreError::Corrupt(format!(
                "the snapshot has {} tables and this version knows {}: it was made by a newer \
                 version of Keystead; upgrade this node",
                self.tables.len(),
                defs.len()
            )));
        }
        let empty = Vec::new();
        let rows_of = self.tables.iter().chain(std::iter::repeat(&empty));
        for (def, rows) in defs.iter().zip(rows_of) {
            let mut table = txn.open_table(*def)?;
            table.retain(|_, _| false)?;
            for (k, v) in rows {
                table.insert(k.as_str(), v.as_slice())?;
            }
        }
        tables::upgrade_layout(txn)
    }
}

/// One replicated entry to apply: its Raft index and the commands it carries, applied in order
/// (none for blank and membership entries, which only advance the applied position).
pub struct ReplicatedEntry {
    pub index: u64,
    pub commands: Vec<Command>,
}

impl Store {
    /// A value of the state machine's Raft metadata (its applied position and membership).
    pub fn raft_meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RAFT_META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Applies replicated entries in order, recording `applied_state` (stored under
    /// `applied_key` in the Raft metadata) in the same transaction, and answers each entry's
    /// commands' outcomes. Commits without fsync, but every [`STATE_SYNC_EVERY`]-th time
    /// durably. A refused command changes nothing (apply decides refusals before its first
    /// write), so it cannot affect the commands around it.
    pub fn apply_replicated(
        &self,
        entries: &[ReplicatedEntry],
        applied_key: &str,
        applied_state: &[u8],
    ) -> Result<Vec<Vec<ApplyResult>>, StoreError> {
        let mut txn = self.db.begin_write()?;
        let durable =
            self.applies_since_sync.fetch_add(1, Ordering::Relaxed) + 1 >= STATE_SYNC_EVERY;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut outcomes = Vec::with_capacity(entry.commands.len());
            for command in &entry.commands {
                outcomes.push(apply::apply(&txn, entry.index, command)?);
            }
            results.push(outcomes);
        }
        {
            let mut meta = txn.open_table(RAFT_META)?;
            meta.insert(applied_key, applied_state)?;
            if let Some(last) = entries.last() {
                put_index(&mut meta, APPLIED_INDEX, last.index)?;
            }
        }
        self.commit(txn)?;
        if durable {
            self.applies_since_sync.store(0, Ordering::Relaxed);
        }
        Ok(results)
    }

    /// Makes everything applied so far durable (one durable commit, which carries every
    /// non-durable one before it) and answers the applied index it made durable. A store
    /// written before the applied index was kept has none until its next apply.
    pub fn sync_applied(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_write()?;
        let applied = get_index(&txn.open_table(RAFT_META)?, APPLIED_INDEX)?;
        self.commit(txn)?;
        self.applies_since_sync.store(0, Ordering::Relaxed);
        Ok(applied)
    }

    /// Every state table (not the logs), serialized — a snapshot's data — together with the
    /// Raft metadata value under `applied_key`, both read from one consistent view.
    pub fn export_state(
        &self,
        applied_key: &str,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), StoreError> {
        let txn = self.db.begin_read()?;
        let applied = txn
            .open_table(RAFT_META)?
            .get(applied_key)?
            .map(|v| v.value().to_vec());
        let dump = StateDump::read(&txn, &tables::state_tables())?;
        Ok((codec::encode(&dump)?, applied))
    }

    /// Replaces every state table with a snapshot's data and records the applied state (and,
    /// for a snapshot of some entries, the applied index), in one durable commit. Called through
    /// [`crate::RaftLogFile::install_snapshot`], which then purges the log the snapshot covers.
    pub(crate) fn import_state(
        &self,
        data: &[u8],
        applied_key: &str,
        applied_state: &[u8],
        index: Option<u64>,
    ) -> Result<(), StoreError> {
        let dump: StateDump = codec::decode(data)?;
        let txn = self.db.begin_write()?;
        dump.write(&txn, &tables::state_tables())?;
        {
            let mut meta = txn.open_table(RAFT_META)?;
            meta.insert(applied_key, applied_state)?;
            if let Some(index) = index {
                put_index(&mut meta, APPLIED_INDEX, index)?;
            }
        }
        self.commit(txn)?;
        self.applies_since_sync.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The applied index as the state file has it now, durable or not (a read: nothing is
    /// committed).
    pub(crate) fn applied_index(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        get_index(&txn.open_table(RAFT_META)?, APPLIED_INDEX)
    }

    /// A Raft log left in this file by a version that kept it here: its entries, and the
    /// metadata other than the state's (`state_meta_keys` and the applied index).
    pub(crate) fn legacy_raft_log(
        &self,
        state_meta_keys: &[&str],
    ) -> Result<LegacyLog, StoreError> {
        let txn = self.db.begin_read()?;
        let mut legacy = LegacyLog::default();
        match txn.open_table(RAFT_LOG) {
            Ok(log) => {
                for row in log.iter()? {
                    let (k, v) = row?;
                    legacy.entries.push((k.value(), v.value().to_vec()));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for row in txn.open_table(RAFT_META)?.iter()? {
            let (k, v) = row?;
            let key = k.value();
            if !is_state_key(key, state_meta_keys) {
                legacy.meta.push((key.to_string(), v.value().to_vec()));
            }
        }
        Ok(legacy)
    }

    /// Whether [`Store::legacy_raft_log`] would find anything, without copying it out.
    fn holds_legacy_raft_log(&self, state_meta_keys: &[&str]) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        match txn.open_table(RAFT_LOG) {
            Ok(log) => {
                if log.first()?.is_some() {
                    return Ok(true);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for row in txn.open_table(RAFT_META)?.iter()? {
            if !is_state_key(row?.0.value(), state_meta_keys) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes a legacy Raft log from this file once it has its own (a no-op without one).
    pub(crate) fn drop_legacy_raft_log(&self, state_meta_keys: &[&str]) -> Result<(), StoreError> {
        if !self.holds_legacy_raft_log(state_meta_keys)? {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        txn.delete_table(RAFT_LOG)?;
        txn.open_table(RAFT_META)?
            .retain(|key, _| is_state_key(key, state_meta_keys))?;
        self.commit(txn)?;
        Ok(())
    }
}

/// Whether a key of the state file's Raft metadata belongs to the state (the caller's
/// `state_meta_keys`, and the applied index); every other key came with a legacy log.
fn is_state_key(key: &str, state_meta_keys: &[&str]) -> bool {
    key == APPLIED_INDEX || state_meta_keys.contains(&key)
}
