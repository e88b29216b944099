//! The Raft log's own redb file (`raft-log.redb`, beside the state's `keystead.redb`): the log
//! entries and the log's metadata (vote, committed position, purge point), as opaque bytes from
//! `keystead-replication`, which owns the openraft types.
//!
//! Why a file of its own: every log append is a durable commit, and a commit's fsync writes back
//! every page dirtied in that file since the last one. In one file with the state, that was also
//! every page the previous applies had changed (about 21 pages per append); alone, an append
//! flushes only the log's few pages, and its commit takes half the time.
//!
//! Durability: appends, the vote, truncation and purge commit with fsync; the committed
//! position is a hint that the replication crate writes with an append now and then. The state file
//! commits applies without fsync (see `raft.rs`), so the two files reach the disk at different
//! times, and one rule keeps them consistent: **the log is never purged past the state's
//! durable applied index.** A purge first makes the state durable ([`Store::sync_applied`]),
//! and purges only as far as it covers.
//! Installing a snapshot commits the state durably first and purges the log after; a crash in
//! between leaves a log that still holds entries the state covers, which the replication crate
//! reconciles when it opens the log (see its `LogStore::open`).

use crate::raft_log_tail::LogTail;
use crate::{Store, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::Path;

/// Raft log index → serialized openraft entry.
pub(crate) const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The log's metadata: the caller's values (vote, committed, purge point) and the store's own.
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The index the log is purged to (a big-endian `u64` in `RAFT_META`).
const PURGED_INDEX: &str = "store:purged_index";

/// Where an installed snapshot leaves the Raft log and the state machine.
pub struct SnapshotPoint<'a> {
    /// The index of the last entry the snapshot covers (none for an empty snapshot).
    pub index: Option<u64>,
    /// The state machine's applied state, stored under `applied_key` in the state file.
    pub applied_key: &'a str,
    pub applied_state: &'a [u8],
    /// The log's purge point, stored under `purged_key` in the log file.
    pub purged_key: &'a str,
    pub purged_value: &'a [u8],
}

pub struct RaftLogFile {
    db: Database,
    /// The newest entries, also in memory (`raft_log_tail.rs`).
    tail: LogTail,
}

pub(crate) fn get_index(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
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

pub(crate) fn put_index(
    meta: &mut redb::Table<&str, &[u8]>,
    key: &str,
    index: u64,
) -> Result<(), StoreError> {
    meta.insert(key, index.to_be_bytes().as_slice())?;
    Ok(())
}

impl RaftLogFile {
    /// Opens (or creates) the log file at `path`. A node whose log still lives in its state file
    /// (`state`, written before the log had a file of its own) has it moved here first; the
    /// state file's Raft metadata keeps only `state_meta_keys` (and the store's own applied
    /// index), the rest moves with the log.
    ///
    /// The move survives a crash at any point: the new file is written and synced under a
    /// temporary name, renamed into place (the step that makes it count), and only then is the
    /// old copy dropped, which a later open finishes if a crash interrupted it.
    ///
    /// A missing file beside a state that has applied entries (and holds no log to move) is
    /// refused: the log file is created before anything is applied, so it was lost, and with it
    /// the node's vote.
    pub fn open(
        path: &Path,
        state: &Store,
        state_meta_keys: &[&str],
    ) -> Result<RaftLogFile, StoreError> {
        if !path.exists() {
            let legacy = state.legacy_raft_log(state_meta_keys)?;
            if legacy.is_empty() && state.applied_index()?.is_some() {
                return Err(StoreError::MissingRaftLog(path.to_path_buf()));
            }
            if !legacy.is_empty() {
                let partial = path.with_extension("redb.part");
                let _ = std::fs::remove_file(&partial);
                {
                    let file = RaftLogFile::set_up(Database::create(&partial)?)?;
                    file.copy_in(&legacy)?;
                }
                std::fs::rename(&partial, path)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
            }
        }
        let file = RaftLogFile::set_up(Database::create(path)?)?;
        state.drop_legacy_raft_log(state_meta_keys)?;
        Ok(file)
    }

    /// Opens (or creates) the log on another storage than a file: the simulation tests'
    /// crashable disk (`sim_disk`).
    pub fn open_on(backend: impl redb::StorageBackend) -> Result<RaftLogFile, StoreError> {
        RaftLogFile::set_up(Database::builder().create_with_backend(backend)?)
    }

    fn set_up(db: Database) -> Result<RaftLogFile, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(RAFT_LOG)?;
        txn.open_table(RAFT_META)?;
        txn.commit()?;
        Ok(RaftLogFile {
            db,
            tail: LogTail::default(),
        })
    }

    /// Writes a moved log's rows in one durable commit.
    fn copy_in(&self, legacy: &LegacyLog) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(RAFT_LOG)?;
            for (index, bytes) in &legacy.entries {
                log.insert(*index, bytes.as_slice())?;
            }
            let mut meta = txn.open_table(RAFT_META)?;
            for (key, value) in &legacy.meta {
                meta.insert(key.as_str(), value.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RAFT_META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes one metadata value durably.
    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RAFT_META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Appends log entries durably (fsync before returning), with metadata values (`meta`:
    /// hints such as the committed position) written in the same commit.
    pub fn append(
        &self,
        entries: &[(u64, Vec<u8>)],
        meta: &[(&str, &[u8])],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(RAFT_LOG)?;
            for (index, bytes) in entries {
                log.insert(*index, bytes.as_slice())?;
            }
            let mut table = txn.open_table(RAFT_META)?;
            for (key, value) in meta {
                table.insert(*key, *value)?;
            }
        }
        match txn.commit() {
            Ok(()) => self.tail.appended(entries),
            Err(e) => {
                // Whether the entries are in the file is unknown: mirror nothing.
                self.tail.clear();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Entries `[start, end)` from memory, if they are among the newest appended and total at
    /// most `max_bytes` (see `raft_log_tail.rs`); `None` means: read them with
    /// [`RaftLogFile::range`].
    pub fn recent_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        max_bytes: usize,
    ) -> Option<Vec<(u64, Vec<u8>)>> {
        let start = match start {
            Bound::Included(s) => s,
            Bound::Excluded(s) => s.checked_add(1)?,
            Bound::Unbounded => return None,
        };
        let end = match end {
            Bound::Included(e) => e.checked_add(1)?,
            Bound::Excluded(e) => e,
            Bound::Unbounded => return None,
        };
        self.tail.range(start, end, max_bytes)
    }

    pub fn range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(RAFT_LOG)?;
        let mut out = Vec::new();
        for row in log.range::<u64>((start, end))? {
            let (k, v) = row?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn get(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(RAFT_LOG)?;
        let entry = log.get(index)?.map(|v| v.value().to_vec());
        Ok(entry)
    }

    pub fn last(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(RAFT_LOG)?;
        let last = log.last()?.map(|(_, v)| v.value().to_vec());
        Ok(last)
    }

    /// The first index missing from the log while a later entry is present, if any: the log's
    /// entries should run without a hole from its purge point (or, never purged, its first
    /// entry) to its last. The replication crate cuts a log found with a hole at open (see its
    /// `LogStore::open` for how one comes about).
    pub fn first_gap(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let purged = get_index(&txn.open_table(RAFT_META)?, PURGED_INDEX)?;
        let log = txn.open_table(RAFT_LOG)?;
        let mut expected = purged.and_then(|purged| purged.checked_add(1));
        for row in log.iter()? {
            let index = row?.0.value();
            match expected {
                Some(expected) if index > expected => return Ok(Some(expected)),
                Some(expected) if index < expected => continue,
                _ => {}
            }
            expected = index.checked_add(1);
        }
        Ok(None)
    }

    /// Drops every entry and the purge point (`purged_key` and the store's own), in one durable
    /// commit: the log of a node that has applied nothing, found purged at open (see the
    /// replication crate's `LogStore::open`).
    pub fn clear(&self, purged_key: &str) -> Result<(), StoreError> {
        self.tail.clear();
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(RAFT_META)?;
            meta.remove(purged_key)?;
            meta.remove(PURGED_INDEX)?;
            txn.open_table(RAFT_LOG)?.retain(|_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes entries with index `>= from` (conflicting suffix), durably.
    pub fn truncate(&self, from: u64) -> Result<(), StoreError> {
        self.tail.remove_from(from);
        let txn = self.db.begin_write()?;
        txn.open_table(RAFT_LOG)?.retain_in(from.., |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Removes entries with index `<= upto` and records the purge point (`purged_key` =
    /// `purged_value`) in one durable commit, but only as far as the state covers: the state's
    /// applied position is made durable first, and if it is behind `upto` nothing is purged and
    /// the answer is false. (openraft asks a follower to purge the log a snapshot covers before
    /// the snapshot is installed; the install purges it, see [`RaftLogFile::install_snapshot`].)
    pub fn purge(
        &self,
        state: &Store,
        upto: u64,
        purged_key: &str,
        purged_value: &[u8],
    ) -> Result<bool, StoreError> {
        let applied = state.sync_applied()?;
        if applied.is_some_and(|applied| applied < upto) {
            return Ok(false);
        }
        self.remove_entries(upto, purged_key, purged_value, Removal::UpToPurgePoint)?;
        Ok(true)
    }

    /// Installs a snapshot: replaces the state with it in one durable commit, then purges the
    /// log it covers. A crash between the two leaves a log holding entries the state covers, for
    /// the replication crate's reconciliation at open.
    pub fn install_snapshot(
        &self,
        state: &Store,
        data: &[u8],
        at: &SnapshotPoint<'_>,
    ) -> Result<(), StoreError> {
        state.import_state(data, at.applied_key, at.applied_state, at.index)?;
        if let Some(index) = at.index {
            self.remove_entries(
                index,
                at.purged_key,
                at.purged_value,
                Removal::UpToPurgePoint,
            )?;
        }
        Ok(())
    }

    /// Drops every entry and records the purge point `upto`: for a log found, at open, to
    /// disagree with a state that is ahead of it (a crash between a snapshot's install and its
    /// purge, when the log held entries from another leader's history).
    pub fn reset_to(
        &self,
        upto: u64,
        purged_key: &str,
        purged_value: &[u8],
    ) -> Result<(), StoreError> {
        self.remove_entries(upto, purged_key, purged_value, Removal::Everything)
    }

    /// Records the purge point `upto` and removes entries as `removal` says, in one durable
    /// commit.
    fn remove_entries(
        &self,
        upto: u64,
        purged_key: &str,
        purged_value: &[u8],
        removal: Removal,
    ) -> Result<(), StoreError> {
        match removal {
            Removal::UpToPurgePoint => self.tail.remove_upto(upto),
            Removal::Everything => self.tail.clear(),
        }
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(RAFT_META)?;
            let done = get_index(&meta, PURGED_INDEX)?.is_some_and(|purged| purged >= upto);
            if done && removal == Removal::UpToPurgePoint {
                return Ok(());
            }
            meta.insert(purged_key, purged_value)?;
            put_index(&mut meta, PURGED_INDEX, upto)?;
            let mut log = txn.open_table(RAFT_LOG)?;
            match removal {
                Removal::UpToPurgePoint => log.retain_in(..=upto, |_, _| false)?,
                Removal::Everything => log.retain(|_, _| false)?,
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Which entries a purge removes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Those at or before the purge point (an already-done purge is skipped).
    UpToPurgePoint,
    /// All of them (the purge point is set even if the log was purged further).
    Everything,
}

/// A log found in the state file, as written before the log had a file of its own.
#[derive(Default)]
pub(crate) struct LegacyLog {
    pub(crate) entries: Vec<(u64, Vec<u8>)>,
    pub(crate) meta: Vec<(String, Vec<u8>)>,
}

impl LegacyLog {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.meta.is_empty()
    }
}
