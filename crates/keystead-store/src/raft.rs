//! Persistence primitives for the replicated log (used by `keystead-replication`, which owns
//! the openraft types and hands us opaque bytes): the Raft log and its metadata, batched apply
//! of replicated commands, and whole-state export/import for snapshots.
//!
//! Purging never passes the state machine: the store keeps, beside the caller's opaque values,
//! the index the state machine has applied and the index the log is purged to. A purge beyond
//! the applied index is skipped; installing a snapshot purges the log it covers in its own
//! commit. openraft (0.9) issues a follower's purge right after handing it a snapshot to
//! install, without waiting for the install, so a crash between the two could otherwise leave
//! a log purged past a state machine that never got the snapshot: a node that cannot restart.
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
/// The store's own Raft metadata (big-endian `u64`s in `RAFT_META`): the last index applied to
/// the state machine, and the index the log is purged to.
const APPLIED_INDEX: &str = "store:applied_index";
const PURGED_INDEX: &str = "store:purged_index";

fn get_index(meta: &redb::Table<&str, &[u8]>, key: &str) -> Result<Option<u64>, StoreError> {
    match meta.get(key)? {
        Some(value) => {
            let bytes: [u8; 8] = value
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("{key} is not a u64")))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
        None => Ok(None),
    }
}

fn put_index(meta: &mut redb::Table<&str, &[u8]>, key: &str, index: u64) -> Result<(), StoreError> {
    meta.insert(key, index.to_be_bytes().as_slice())?;
    Ok(())
}

/// Removes log entries up to `upto` and records the purge point (`purged_key` = `purged_value`)
/// unless the log is already purged that far.
fn purge_log(
    txn: &redb::WriteTransaction,
    upto: u64,
    purged_key: &str,
    purged_value: &[u8],
) -> Result<(), StoreError> {
    let mut meta = txn.open_table(RAFT_META)?;
    if get_index(&meta, PURGED_INDEX)?.is_some_and(|purged| purged >= upto) {
        return Ok(());
    }
    meta.insert(purged_key, purged_value)?;
    put_index(&mut meta, PURGED_INDEX, upto)?;
    txn.open_table(RAFT_LOG)?.retain_in(..=upto, |_, _| false)?;
    Ok(())
}

/// Where an installed snapshot leaves the Raft log and the state machine.
pub struct SnapshotPoint<'a> {
    /// The index of the last entry the snapshot covers (none for an empty snapshot).
    pub index: Option<u64>,
    /// The state machine's applied state, stored under `applied_key`.
    pub applied_key: &'a str,
    pub applied_state: &'a [u8],
    /// The log's purge point, stored under `purged_key`.
    pub purged_key: &'a str,
    pub purged_value: &'a [u8],
}

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

    /// Removes entries with index `<= upto` and records the purge point (`meta_key` =
    /// `meta_value`), in one durable commit — unless the state machine has not applied that far,
    /// and then does nothing and answers false: those entries are not covered by the state here
    /// yet (a snapshot being installed purges them itself, see [`Store::import_state`]). A store
    /// written before the applied index was kept has no bound until its next apply.
    pub fn raft_log_purge(
        &self,
        upto: u64,
        meta_key: &str,
        meta_value: &[u8],
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let applied = get_index(&txn.open_table(RAFT_META)?, APPLIED_INDEX)?;
        if applied.is_some_and(|applied| applied < upto) {
            return Ok(false);
        }
        purge_log(&txn, upto, meta_key, meta_value)?;
        txn.commit()?;
        Ok(true)
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
        {
            let mut meta = txn.open_table(RAFT_META)?;
            meta.insert(applied_key, applied_state)?;
            if let Some(last) = entries.last() {
                put_index(&mut meta, APPLIED_INDEX, last.index)?;
            }
        }
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

    /// Installs a snapshot: replaces every state table with its data, records the applied state,
    /// and purges the log it covers, in one durable commit.
    pub fn import_state(&self, data: &[u8], at: &SnapshotPoint<'_>) -> Result<(), StoreError> {
        let dump: StateDump = codec::decode(data)?;
        let txn = self.db.begin_write()?;
        dump.write(&txn, &tables::state_tables())?;
        txn.open_table(RAFT_META)?
            .insert(at.applied_key, at.applied_state)?;
        if let Some(index) = at.index {
            put_index(&mut txn.open_table(RAFT_META)?, APPLIED_INDEX, index)?;
            purge_log(&txn, index, at.purged_key, at.purged_value)?;
        }
        txn.commit()?;
        Ok(())
    }
}
