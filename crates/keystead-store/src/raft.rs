//! Persistence primitives for the replicated log (used by `keystead-replication`, which owns
//! the openraft types and hands us opaque bytes): the Raft log and its metadata, batched apply
//! of replicated commands, and whole-state export/import for snapshots.
//!
//! Durability: log appends, the vote, truncation and purge commit with fsync
//! (`Durability::Immediate`); the committed position is a hint and commits without it.
//! Applying replicated entries commits without fsync: the entries are already durable in the
//! Raft log, the applied position is written in the same transaction as the state it
//! describes, and redb makes a non-durable commit durable with the next durable one — so after
//! a crash the state machine is at some earlier applied position, consistent with it, and Raft
//! re-applies the rest from the log.

use crate::tables;
use crate::{apply, codec, ApplyResult, Store, StoreError};
use keystead_model::Command;
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::ops::Bound;

/// Raft log index → serialized openraft entry.
const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft metadata: vote, committed, last purged, state-machine applied state.
const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

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

    /// Replaces the contents of `defs` with the dump's, inside `txn`.
    pub(crate) fn write(
        &self,
        txn: &redb::WriteTransaction,
        defs: &[TableDefinition<&str, &[u8]>],
    ) -> Result<(), StoreError> {
        if self.tables.len() != defs.len() {
            return Err(StoreError::Corrupt(
                "snapshot has the wrong table count".into(),
            ));
        }
        for (def, rows) in defs.iter().zip(&self.tables) {
            let mut table = txn.open_table(*def)?;
            table.retain(|_, _| false)?;
            for (k, v) in rows {
                table.insert(k.as_str(), v.as_slice())?;
            }
        }
        Ok(())
    }
}

/// One replicated entry to apply: its Raft index and, for normal entries, the command
/// (blank and membership entries only advance the applied position).
pub struct ReplicatedEntry {
    pub index: u64,
    pub command: Option<Command>,
}

impl Store {
    pub fn raft_meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(RAFT_META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes one metadata value durably.
    pub fn raft_meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RAFT_META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Writes one metadata value without fsync. It becomes durable with the next durable
    /// commit (the next log append, at the latest); a crash before that keeps the older value.
    /// For hints that are safe to lose, such as the committed position: a node that restarts
    /// with an older one re-learns the rest from the leader, or, alone, by committing its
    /// first entry as leader.
    pub fn raft_meta_put_lazy(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        txn.open_table(RAFT_META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Appends log entries durably (fsync before returning).
    pub fn raft_log_append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(RAFT_LOG)?;
            for (index, bytes) in entries {
                log.insert(*index, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn raft_log_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = match txn.open_table(RAFT_LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in log.range::<u64>((start, end))? {
            let (k, v) = row?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn raft_log_last(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = match txn.open_table(RAFT_LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let last = log.last()?.map(|(_, v)| v.value().to_vec());
        Ok(last)
    }

    /// Removes entries with index `>= from` (conflicting suffix), durably.
    pub fn raft_log_truncate(&self, from: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RAFT_LOG)?.retain_in(from.., |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Removes entries with index `<= upto` and records the purge point, in one durable commit.
    pub fn raft_log_purge(
        &self,
        upto: u64,
        meta_key: &str,
        meta_value: &[u8],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RAFT_META)?.insert(meta_key, meta_value)?;
        txn.open_table(RAFT_LOG)?.retain_in(..=upto, |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Applies replicated entries in order, recording `applied_state` (stored under
    /// `applied_key` in the Raft metadata) in the same transaction.
    pub fn apply_replicated(
        &self,
        entries: &[ReplicatedEntry],
        applied_key: &str,
        applied_state: &[u8],
    ) -> Result<Vec<Option<ApplyResult>>, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            results.push(match &entry.command {
                Some(command) => Some(apply::apply(&txn, entry.index, command)?),
                None => None,
            });
        }
        txn.open_table(RAFT_META)?
            .insert(applied_key, applied_state)?;
        txn.commit()?;
        Ok(results)
    }

    /// Every state table (not the logs), serialized — a snapshot's data — together with the
    /// Raft metadata value under `applied_key`, both read from one consistent view.
    pub fn export_state(
        &self,
        applied_key: &str,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), StoreError> {
        let txn = self.db.begin_read()?;
        let applied = match txn.open_table(RAFT_META) {
            Ok(t) => t.get(applied_key)?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let dump = StateDump::read(&txn, &tables::state_tables())?;
        Ok((codec::encode(&dump)?, applied))
    }

    /// Replaces every state table with a snapshot's data and records `applied_state`, durably.
    pub fn import_state(
        &self,
        data: &[u8],
        applied_key: &str,
        applied_state: &[u8],
    ) -> Result<(), StoreError> {
        let dump: StateDump = codec::decode(data)?;
        let txn = self.db.begin_write()?;
        dump.write(&txn, &tables::state_tables())?;
        txn.open_table(RAFT_META)?
            .insert(applied_key, applied_state)?;
        txn.commit()?;
        Ok(())
    }
}
