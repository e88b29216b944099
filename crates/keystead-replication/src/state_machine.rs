//! The Raft state machine: committed entries are applied to the store's tables (the same
//! deterministic `apply` single-node mode uses). A snapshot is the store's state tables
//! exported as one blob — ciphertext only — plus the applied position and membership.

use crate::io_error;
use crate::log_store::LAST_PURGED;
use crate::types::{
    Entry, EntryResponse, LogId, Response, StorageError, StoredMembership, TypeConfig,
};
use keystead_store::{RaftLogFile, ReplicatedEntry, SnapshotPoint, Store};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftLogId, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

/// Raft metadata key (in the state file) of the state machine's applied position and
/// membership.
pub const APPLIED: &str = "sm_applied";

type Meta = SnapshotMeta<u64, crate::NodeInfo>;

#[derive(Clone)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    /// The log file, which an installed snapshot purges.
    log: Arc<RaftLogFile>,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl StateMachine {
    pub fn new(store: Arc<Store>, log: Arc<RaftLogFile>) -> StateMachine {
        StateMachine {
            store,
            log,
            current: Arc::new(Mutex::new(None)),
        }
    }

    /// The applied position and membership recorded in the state file.
    pub(crate) fn applied(
        store: &Store,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        match store
            .raft_meta_get(APPLIED)
            .map_err(|e| io_error(StorageIOError::read_state_machine, e))?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_error(StorageIOError::read_state_machine, e)),
            None => Ok((None, StoredMembership::default())),
        }
    }

    fn current(&self) -> Option<StoredSnapshot> {
        self.current.lock().ok().and_then(|g| g.clone())
    }

    fn set_current(&self, snapshot: StoredSnapshot) {
        if let Ok(mut guard) = self.current.lock() {
            *guard = Some(snapshot);
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let (data, applied) = tokio::task::spawn_blocking(move || store.export_state(APPLIED))
            .await
            .map_err(|e| io_error(StorageIOError::read_state_machine, e))?
            .map_err(|e| io_error(StorageIOError::read_state_machine, e))?;
        let (last_log_id, last_membership): (Option<LogId>, StoredMembership) = match applied {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_error(StorageIOError::read_state_machine, e))?,
            None => (None, StoredMembership::default()),
        };
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = Meta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        self.set_current(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || StateMachine::applied(&store))
            .await
            .map_err(|e| io_error(StorageIOError::read_state_machine, e))?
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<EntryResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let store = self.store.clone();
        let entries: Vec<Entry> = entries.into_iter().collect();
        crate::blocking::run_blocking(move || {
            let (mut last, mut membership) = StateMachine::applied(&store)?;
            let mut batch = Vec::with_capacity(entries.len());
            for entry in entries {
                let log_id = *entry.get_log_id();
                last = Some(log_id);
                let commands = match entry.payload {
                    EntryPayload::Normal(proposal) => proposal.into_commands(),
                    EntryPayload::Membership(m) => {
                        membership = StoredMembership::new(Some(log_id), m);
                        Vec::new()
                    }
                    EntryPayload::Blank => Vec::new(),
                };
                batch.push(ReplicatedEntry {
                    index: log_id.index,
                    commands,
                });
            }
            let applied = serde_json::to_vec(&(last, &membership))
                .map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
            let results = store
                .apply_replicated(&batch, APPLIED, &applied)
                .map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
            Ok(results
                .into_iter()
                .map(|outcomes| {
                    EntryResponse(outcomes.into_iter().map(|o| Response(Some(o))).collect())
                })
                .collect())
        })
        .await
        .map_err(|e| io_error(StorageIOError::write_state_machine, e))?
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let applied = serde_json::to_vec(&(meta.last_log_id, &meta.last_membership))
            .map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
        let purged = serde_json::to_vec(&meta.last_log_id)
            .map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
        let index = meta.last_log_id.map(|id| id.index);
        let (store, log) = (self.store.clone(), self.log.clone());
        let to_import = data.clone();
        tokio::task::spawn_blocking(move || {
            // The state first, durably; then the log the snapshot covers (see `LogStore::purge`).
            log.install_snapshot(
                &store,
                &to_import,
                &SnapshotPoint {
                    index,
                    applied_key: APPLIED,
                    applied_state: &applied,
                    purged_key: LAST_PURGED,
                    purged_value: &purged,
                },
            )
        })
        .await
        .map_err(|e| io_error(StorageIOError::write_state_machine, e))?
        .map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
        self.set_current(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.current().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
