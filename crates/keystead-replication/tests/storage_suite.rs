//! openraft's storage conformance suite against the redb-backed log store and state machine.

use keystead_replication::{LogStore, StateMachine, TypeConfig};
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
        Ok((dir, LogStore::new(store.clone()), StateMachine::new(store)))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
