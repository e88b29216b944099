//! openraft's storage conformance suite against the redb-backed log store and state machine.

use keystead_replication::{open_log_file, LogStore, StateMachine, TypeConfig};
use keystead_store::Store;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("db.redb")).expect("open store"));
        let log = open_log_file(dir.path(), &store).expect("open the log file");
        let log_store = LogStore::open(log.clone(), store.clone())?;
        Ok((dir, log_store, StateMachine::new(store, log)))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
