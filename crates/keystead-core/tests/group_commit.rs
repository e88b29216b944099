//! `LocalLog` group commit under concurrency: many callers proposing at once all get their own
//! answer, every command lands in the log exactly once at consecutive indexes, and a refused
//! command in the middle of a batch leaves the others applied.

use keystead_core::{CommandLog, CoreError, LocalLog};
use keystead_model::{
    Applied, ApplyError, Attributes, Ciphertext, Command, ObjectKind, ObjectName, Payload,
    VaultName, VaultSettings, VersionRecord,
};
use keystead_store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const CALLERS: usize = 200;

fn vault() -> VaultName {
    VaultName::parse("demo").unwrap()
}

/// Every tenth caller proposes something the state machine refuses.
fn refused(i: usize) -> bool {
    i % 10 == 5
}

/// Caller `i`'s command: most write a new secret; the refused ones ask to recover a secret that
/// was never deleted.
fn command(i: usize) -> Command {
    let name = ObjectName::parse(&format!("s{i}")).unwrap();
    if refused(i) {
        return Command::RecoverObject {
            vault: vault(),
            kind: ObjectKind::Secret,
            name,
        };
    }
    Command::PutVersion {
        vault: vault(),
        kind: ObjectKind::Secret,
        name,
        version: VersionRecord {
            version: format!("{i:032x}"),
            attributes: Attributes {
                enabled: true,
                not_before: None,
                expires: None,
                created: 1,
                updated: 1,
            },
            tags: BTreeMap::new(),
            content_type: None,
            // The store only ever sees ciphertext; any bytes do here.
            payload: Payload::Secret {
                value: Ciphertext(vec![i as u8; 16]),
            },
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposals_are_all_committed_once_at_consecutive_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("keystead.redb")).unwrap());
    let log = Arc::new(LocalLog::new(store.clone()));
    log.propose(Command::CreateVault(VaultSettings {
        name: vault(),
        retention_days: 7,
        purge_protection: false,
        created: 0,
    }))
    .await
    .unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLERS {
        let log = log.clone();
        tasks.spawn(async move { (i, log.propose(command(i)).await) });
    }
    let mut answered = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.unwrap();
        assert!(answered.insert(i), "caller {i} answered twice");
        if refused(i) {
            assert!(
                matches!(
                    outcome,
                    Err(CoreError::Refused(ApplyError::DeletedObjectNotFound { .. }))
                ),
                "caller {i}: {outcome:?}"
            );
        } else {
            match outcome {
                Ok(Applied::Object { object, .. }) => {
                    assert_eq!(object.name.as_str(), format!("s{i}"))
                }
                other => panic!("caller {i}: {other:?}"),
            }
        }
    }
    assert_eq!(answered.len(), CALLERS);

    // Index 1 is the vault; the callers' commands hold 2..=201, each exactly once, and nothing
    // else is in the log.
    let entries = store.log_entries(1, 10 * CALLERS).unwrap();
    assert_eq!(entries.len(), CALLERS + 1);
    let indexes: Vec<u64> = entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (1..=CALLERS as u64 + 1).collect::<Vec<_>>());
    let mut logged: Vec<Command> = entries[1..].iter().map(|e| e.command.clone()).collect();
    let mut proposed: Vec<Command> = (0..CALLERS).map(command).collect();
    let key = |c: &Command| format!("{c:?}");
    logged.sort_by_key(key);
    proposed.sort_by_key(key);
    assert_eq!(logged, proposed);

    // The state matches: every accepted write is there, the refusals left nothing behind.
    let read = store.read().unwrap();
    assert_eq!(read.last_applied().unwrap(), CALLERS as u64 + 1);
    for i in 0..CALLERS {
        let name = ObjectName::parse(&format!("s{i}")).unwrap();
        let object = read.object(&vault(), ObjectKind::Secret, &name).unwrap();
        assert_eq!(object.is_some(), !refused(i), "secret s{i}");
    }
}

#[tokio::test]
async fn dropping_the_log_releases_the_store() {
    // The writer thread holds the store; once the log is dropped the database file must be
    // free to open again (a restart in the same process, as tests and tools do).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    {
        let store = Arc::new(Store::open(&path).unwrap());
        let log = LocalLog::new(store);
        log.propose(Command::CreateVault(VaultSettings {
            name: vault(),
            retention_days: 7,
            purge_protection: false,
            created: 0,
        }))
        .await
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.read().unwrap().last_applied().unwrap(), 1);
}
