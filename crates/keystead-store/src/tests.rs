//! Store tests: the commit path, apply rules, listing and durability across reopen.

use super::*;
use keystead_model::*;
use std::collections::BTreeMap;

pub(crate) fn vault() -> VaultName {
    VaultName::parse("demo").unwrap()
}

pub(crate) fn name(n: &str) -> ObjectName {
    ObjectName::parse(n).unwrap()
}

pub(crate) fn version(id: &str, at: i64) -> VersionRecord {
    VersionRecord {
        version: id.to_string(),
        attributes: Attributes {
            enabled: true,
            not_before: None,
            expires: None,
            created: at,
            updated: at,
        },
        tags: BTreeMap::new(),
        content_type: None,
        payload: Payload::Secret {
            value: Ciphertext(vec![1, 2, 3]),
        },
    }
}

pub(crate) fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb")).unwrap();
    let create = Command::CreateVault(VaultSettings {
        name: vault(),
        retention_days: 7,
        purge_protection: false,
        created: 0,
    });
    store.append_and_apply(&create).unwrap().1.unwrap();
    (dir, store)
}

pub(crate) fn put_command(n: &str, v: &str) -> Command {
    Command::PutVersion {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name(n),
        version: version(v, 10),
    }
}

pub(crate) fn put(store: &Store, n: &str, v: &str) -> ApplyResult {
    store.append_and_apply(&put_command(n, v)).unwrap().1
}

/// The version ids of an object in creation order, through the paged read.
pub(crate) fn version_ids(store: &Store, kind: ObjectKind, n: &str) -> Vec<String> {
    let (versions, more) = store
        .read()
        .unwrap()
        .versions_in_order(&vault(), kind, &name(n), 0, 1000)
        .unwrap();
    assert!(!more);
    versions.into_iter().map(|v| v.version).collect()
}

#[test]
fn lifecycle_follows_the_rules() {
    let (_dir, store) = open();
    put(&store, "A", "v1").unwrap();
    put(&store, "a", "v2").unwrap();
    let object = store
        .read()
        .unwrap()
        .object(&vault(), ObjectKind::Secret, &name("A"))
        .unwrap()
        .unwrap();
    assert_eq!(version_ids(&store, ObjectKind::Secret, "A"), ["v1", "v2"]);
    assert_eq!((object.latest_version(), object.version_count), ("v2", 2));
    assert_eq!(object.name.as_str(), "A", "keeps the first spelling");

    let delete = Command::DeleteObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("a"),
        at: 100,
    };
    match store.append_and_apply(&delete).unwrap().1.unwrap() {
        Applied::Object { object, version } => {
            assert_eq!(
                object.deleted.unwrap().scheduled_purge_date,
                100 + 7 * 86_400
            );
            assert_eq!(version.version, "v2");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        put(&store, "A", "v3"),
        Err(ApplyError::DeletedButRecoverable { .. })
    ));

    let recover = Command::RecoverObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("A"),
    };
    store.append_and_apply(&recover).unwrap().1.unwrap();
    put(&store, "A", "v3").unwrap();

    // Expiry purges only what is due.
    store.append_and_apply(&delete).unwrap().1.unwrap();
    let early = store
        .append_and_apply(&Command::PurgeExpired { at: 101 })
        .unwrap()
        .1
        .unwrap();
    assert_eq!(early, Applied::Purged { count: 0 });
    let due = store
        .append_and_apply(&Command::PurgeExpired {
            at: 100 + 7 * 86_400,
        })
        .unwrap()
        .1
        .unwrap();
    assert_eq!(due, Applied::Purged { count: 1 });
    assert!(store
        .read()
        .unwrap()
        .object(&vault(), ObjectKind::Secret, &name("A"))
        .unwrap()
        .is_none());
    assert!(store
        .read()
        .unwrap()
        .version(&vault(), ObjectKind::Secret, &name("A"), "v1")
        .unwrap()
        .is_none());
}

#[test]
fn refused_commands_change_nothing_but_are_logged() {
    let (_dir, store) = open();
    let before = store.read().unwrap().last_applied().unwrap();
    let missing = Command::RecoverObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("nope"),
    };
    let (index, result) = store.append_and_apply(&missing).unwrap();
    assert!(matches!(
        result,
        Err(ApplyError::DeletedObjectNotFound { .. })
    ));
    assert_eq!(index, before + 1);
    assert_eq!(store.log_entries(index, 10).unwrap()[0].command, missing);
}

#[test]
fn listing_pages_in_name_order() {
    let (_dir, store) = open();
    for i in 0..7 {
        put(&store, &format!("s{i}"), "v1").unwrap();
    }
    let read = store.read().unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = read
            .list_objects(&vault(), ObjectKind::Secret, false, after.as_deref(), 3)
            .unwrap();
        seen.extend(page.items.iter().map(|(o, _)| o.name.to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("s{i}")).collect::<Vec<_>>());
}

#[test]
fn state_and_log_survive_reopen_and_replay_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let store = Store::open(&path).unwrap();
        store
            .append_and_apply(&Command::CreateVault(VaultSettings {
                name: vault(),
                retention_days: 90,
                purge_protection: true,
                created: 0,
            }))
            .unwrap()
            .1
            .unwrap();
        put(&store, "x", "v1").unwrap();
    }
    let store = Store::open(&path).unwrap();
    let entries = store.log_entries(1, 100).unwrap();
    assert_eq!(entries.len(), 2);
    // Replaying already-applied entries is a no-op.
    for entry in &entries {
        assert!(store.apply_entry(entry).unwrap().is_none());
    }
    assert_eq!(store.read().unwrap().last_applied().unwrap(), 2);
    assert!(
        store
            .read()
            .unwrap()
            .vault(&vault())
            .unwrap()
            .unwrap()
            .purge_protection
    );
}

#[test]
fn batch_appends_consecutively_applies_in_order_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let store = Store::open(&path).unwrap();
        let create = Command::CreateVault(VaultSettings {
            name: vault(),
            retention_days: 7,
            purge_protection: false,
            created: 0,
        });
        let put_cmd = |n: &str, v: &str| Command::PutVersion {
            vault: vault(),
            kind: ObjectKind::Secret,
            name: name(n),
            version: version(v, 10),
        };
        let batch = vec![
            create,
            put_cmd("a", "v1"),
            // Refused: nothing to recover. Must not disturb its neighbours.
            Command::RecoverObject {
                vault: vault(),
                kind: ObjectKind::Secret,
                name: name("missing"),
            },
            put_cmd("b", "v1"),
            // Applied in order: sees "a" written earlier in the same transaction.
            put_cmd("A", "v2"),
            // Refused: a vault of that name already exists (created earlier in this batch).
            Command::CreateVault(VaultSettings {
                name: vault(),
                retention_days: 7,
                purge_protection: false,
                created: 0,
            }),
        ];
        let results = store.append_and_apply_batch(&batch).unwrap();
        let indexes: Vec<u64> = results.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![1, 2, 3, 4, 5, 6]);
        let ok: Vec<bool> = results.iter().map(|(_, r)| r.is_ok()).collect();
        assert_eq!(ok, vec![true, true, false, true, true, false]);
        assert!(matches!(
            results[2].1,
            Err(ApplyError::DeletedObjectNotFound { .. })
        ));

        // A later batch continues the numbering; an empty batch is a no-op.
        assert!(store.append_and_apply_batch(&[]).unwrap().is_empty());
        let (next, _) = store.append_and_apply(&put_cmd("c", "v1")).unwrap();
        assert_eq!(next, 7);

        let entries = store.log_entries(1, 100).unwrap();
        assert_eq!(entries.len(), 6 + 1);
        for (i, entry) in entries.iter().take(6).enumerate() {
            assert_eq!(entry.index, i as u64 + 1);
            assert_eq!(entry.command, batch[i]);
        }
    }
    let store = Store::open(&path).unwrap();
    let read = store.read().unwrap();
    assert_eq!(read.last_applied().unwrap(), 7);
    assert_eq!(store.log_entries(1, 100).unwrap().len(), 7);
    let a = read
        .object(&vault(), ObjectKind::Secret, &name("a"))
        .unwrap()
        .unwrap();
    assert_eq!((a.latest_version(), a.version_count), ("v2", 2));
    assert_eq!(version_ids(&store, ObjectKind::Secret, "a"), ["v1", "v2"]);
    for n in ["b", "c"] {
        assert!(read
            .object(&vault(), ObjectKind::Secret, &name(n))
            .unwrap()
            .is_some());
    }
    assert!(read
        .object(&vault(), ObjectKind::Secret, &name("missing"))
        .unwrap()
        .is_none());
    assert_eq!(read.vaults().unwrap().len(), 1);
}

fn key_version(id: &str, at: i64) -> VersionRecord {
    VersionRecord {
        payload: Payload::Key {
            key: Box::new(KeyMaterial {
                public: PublicKey::Ec {
                    crv: Curve::P256,
                    x: vec![1; 32],
                    y: vec![2; 32],
                },
                private: Ciphertext(vec![9, 9, 9]),
                hsm_requested: false,
                key_ops: vec![KeyOp::Sign, KeyOp::Verify],
                exportable: false,
                release_policy: None,
            }),
        },
        ..version(id, at)
    }
}

#[test]
fn key_updates_and_rotation_policies() {
    let (_dir, store) = open();
    let put = Command::PutVersion {
        vault: vault(),
        kind: ObjectKind::Key,
        name: name("K"),
        version: key_version("v1", 10),
    };
    store.append_and_apply(&put).unwrap().1.unwrap();
    let update = Command::UpdateKey {
        vault: vault(),
        name: name("k"),
        version: None,
        patch: AttributesPatch {
            enabled: Some(false),
            ..AttributesPatch::default()
        },
        key_ops: Some(vec![KeyOp::Verify]),
        release_policy: None,
        at: 20,
    };
    match store.append_and_apply(&update).unwrap().1.unwrap() {
        Applied::Object { version, .. } => {
            assert!(!version.attributes.enabled);
            assert_eq!(version.attributes.updated, 20);
            let Payload::Key { key } = &version.payload else {
                panic!("not a key")
            };
            assert_eq!(key.key_ops, vec![KeyOp::Verify]);
            assert_eq!(key.private, Ciphertext(vec![9, 9, 9]));
        }
        other => panic!("unexpected {other:?}"),
    }

    // A guarded rotation applies only while the version it replaces is the latest.
    let rotate = |replaces: &str, id: &str| Command::RotateKey {
        vault: vault(),
        name: name("K"),
        replaces: replaces.to_string(),
        version: key_version(id, 25),
    };
    store
        .append_and_apply(&rotate("v1", "v2"))
        .unwrap()
        .1
        .unwrap();
    assert!(matches!(
        store.append_and_apply(&rotate("v1", "v3")).unwrap().1,
        Err(ApplyError::RotationSuperseded { .. })
    ));
    let object = store
        .read()
        .unwrap()
        .object(&vault(), ObjectKind::Key, &name("K"))
        .unwrap()
        .unwrap();
    assert_eq!((object.latest_version(), object.version_count), ("v2", 2));
    assert_eq!(version_ids(&store, ObjectKind::Key, "K"), ["v1", "v2"]);

    let policy = |created| RotationPolicy {
        lifetime_actions: vec![LifetimeAction {
            action: RotationAction::Rotate,
            trigger: RotationTrigger::AfterCreate("P30D".into()),
        }],
        expiry_time: Some("P90D".into()),
        created,
        updated: created,
    };
    let set = |created| Command::SetRotationPolicy {
        vault: vault(),
        name: name("K"),
        policy: policy(created),
    };
    store.append_and_apply(&set(30)).unwrap().1.unwrap();
    store.append_and_apply(&set(40)).unwrap().1.unwrap();
    let stored = store
        .read()
        .unwrap()
        .rotation_policy(&vault(), &name("k"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.created, stored.updated),
        (30, 40),
        "created is kept"
    );
    assert_eq!(store.read().unwrap().rotation_policies().unwrap().len(), 1);

    // A policy for a key that does not exist is refused and changes nothing.
    let missing = Command::SetRotationPolicy {
        vault: vault(),
        name: name("nope"),
        policy: policy(1),
    };
    assert!(matches!(
        store.append_and_apply(&missing).unwrap().1,
        Err(ApplyError::ObjectNotFound { .. })
    ));

    // Purging the key removes its policy.
    let delete = Command::DeleteObject {
        vault: vault(),
        kind: ObjectKind::Key,
        name: name("K"),
        at: 50,
    };
    store.append_and_apply(&delete).unwrap().1.unwrap();
    let purge = Command::PurgeObject {
        vault: vault(),
        kind: ObjectKind::Key,
        name: name("K"),
    };
    store.append_and_apply(&purge).unwrap().1.unwrap();
    assert!(store
        .read()
        .unwrap()
        .rotation_policy(&vault(), &name("K"))
        .unwrap()
        .is_none());
}

#[test]
fn a_replayed_put_is_idempotent_but_a_different_record_with_the_same_id_is_refused() {
    let (_dir, store) = open();
    let first = put(&store, "r", "v1").unwrap();
    assert_eq!(
        put(&store, "r", "v1").unwrap(),
        first,
        "replay answers like the first apply"
    );
    let object = store
        .read()
        .unwrap()
        .object(&vault(), ObjectKind::Secret, &name("r"))
        .unwrap()
        .unwrap();
    assert_eq!(object.version_count, 1, "no duplicate version");
    assert_eq!(version_ids(&store, ObjectKind::Secret, "r"), ["v1"]);
    let mut other = version("v1", 99);
    other.content_type = Some("x".into());
    let cmd = Command::PutVersion {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("r"),
        version: other,
    };
    assert!(matches!(
        store.append_and_apply(&cmd).unwrap().1,
        Err(ApplyError::VersionExists { .. })
    ));
}

fn principal(id: &str) -> Command {
    Command::CreatePrincipal(Principal {
        client_id: id.into(),
        display_name: id.into(),
        secret_hash: "h".into(),
        created: 0,
    })
}

fn assign(id: &str, principal: &str, vault_name: &str) -> Command {
    Command::AssignRole(RoleAssignment {
        id: id.into(),
        principal_id: principal.into(),
        role: Role::Reader,
        scope: Scope {
            vault: VaultName::parse(vault_name).unwrap(),
            object: None,
        },
        created: 0,
    })
}

fn ids_of(store: &Store, principal: &str) -> Vec<String> {
    let mut ids: Vec<String> = store
        .read()
        .unwrap()
        .role_assignments_of(principal)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_per_principal_role_index_follows_every_change_and_is_rebuilt_at_open() {
    let (dir, store) = open();
    let other_vault = Command::CreateVault(VaultSettings {
        name: VaultName::parse("other").unwrap(),
        retention_days: 7,
        purge_protection: false,
        created: 0,
    });
    for command in [
        other_vault,
        principal("p1"),
        principal("p10"),
        assign("a1", "p1", "demo"),
        assign("a2", "p1", "other"),
        assign("a3", "p10", "demo"),
    ] {
        store.append_and_apply(&command).unwrap().1.unwrap();
    }
    // "p1/" is not a prefix of "p10/...": each principal sees only its own.
    assert_eq!(ids_of(&store, "p1"), ["a1", "a2"]);
    assert_eq!(ids_of(&store, "p10"), ["a3"]);
    let remove = Command::RemoveRole { id: "a1".into() };
    store.append_and_apply(&remove).unwrap().1.unwrap();
    assert_eq!(ids_of(&store, "p1"), ["a2"]);
    let drop_vault = Command::DeleteVault {
        vault: VaultName::parse("other").unwrap(),
    };
    store.append_and_apply(&drop_vault).unwrap().1.unwrap();
    assert!(ids_of(&store, "p1").is_empty());
    let drop_principal = Command::DeletePrincipal {
        client_id: "p10".into(),
    };
    store.append_and_apply(&drop_principal).unwrap().1.unwrap();
    assert!(ids_of(&store, "p10").is_empty());
    assert!(store.read().unwrap().role_assignments().unwrap().is_empty());

    // A store written before the index existed gets it at open.
    store.append_and_apply(&principal("p2")).unwrap().1.unwrap();
    store
        .append_and_apply(&assign("a4", "p2", "demo"))
        .unwrap()
        .1
        .unwrap();
    forget_index(&store, tables::ROLES_BY_PRINCIPAL);
    assert!(ids_of(&store, "p2").is_empty());
    let path = dir.path().join("db.redb");
    drop(store);
    let reopened = Store::open(&path).unwrap();
    assert_eq!(ids_of(&reopened, "p2"), ["a4"]);
}

pub(crate) fn apply_ok(store: &Store, command: Command) -> Applied {
    store.append_and_apply(&command).unwrap().1.unwrap()
}

pub(crate) fn delete_at(n: &str, at: i64) -> Command {
    Command::DeleteObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name(n),
        at,
    }
}

fn schedule_len(store: &Store) -> u64 {
    let txn = store.db.begin_read().unwrap();
    let table = txn.open_table(tables::PURGE_SCHEDULE).unwrap();
    redb::ReadableTableMetadata::len(&table).unwrap()
}

#[test]
fn purge_schedule_keys_sort_by_date_including_negative_dates() {
    let dates = [i64::MIN, -5, 0, 3, 1_800_000_000, i64::MAX];
    let keys: Vec<String> = dates
        .iter()
        .map(|d| tables::purge_schedule_key(*d, "demo/secrets/x"))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    for (date, key) in dates.iter().zip(&keys) {
        assert_eq!(
            tables::parse_purge_schedule_key(key),
            Some((*date, "demo/secrets/x"))
        );
    }
}

#[test]
fn the_purge_schedule_follows_every_change_and_is_rebuilt_at_open() {
    const WEEK: i64 = 7 * 86_400;
    let (dir, store) = open();
    let earliest = |store: &Store| store.read().unwrap().earliest_purge_date().unwrap();
    for n in ["a", "b", "c", "d"] {
        put(&store, n, "v1").unwrap();
    }
    apply_ok(&store, delete_at("a", 100));
    apply_ok(&store, delete_at("b", 50));
    apply_ok(&store, delete_at("c", 300));
    assert_eq!(schedule_len(&store), 3);
    assert_eq!(earliest(&store), Some(50 + WEEK));

    // Recovering takes an object off the schedule; purging it explicitly too.
    let recover = Command::RecoverObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("b"),
    };
    apply_ok(&store, recover);
    assert_eq!(earliest(&store), Some(100 + WEEK));
    let purge = Command::PurgeObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("a"),
    };
    apply_ok(&store, purge);
    assert_eq!(earliest(&store), Some(300 + WEEK));
    assert_eq!(schedule_len(&store), 1);

    // Expiry purges exactly what is due, and takes it off the schedule.
    let early = apply_ok(&store, Command::PurgeExpired { at: 300 + WEEK - 1 });
    assert_eq!(early, Applied::Purged { count: 0 });
    let due = apply_ok(&store, Command::PurgeExpired { at: 300 + WEEK });
    assert_eq!(due, Applied::Purged { count: 1 });
    assert_eq!(earliest(&store), None);
    assert_eq!(schedule_len(&store), 0);

    // Deleting the vault takes its deleted objects off the schedule.
    apply_ok(&store, delete_at("d", 400));
    assert_eq!(schedule_len(&store), 1);
    apply_ok(&store, Command::DeleteVault { vault: vault() });
    assert_eq!(schedule_len(&store), 0);

    // A store written before the schedule existed gets it at open.
    let create = Command::CreateVault(VaultSettings {
        name: vault(),
        retention_days: 7,
        purge_protection: false,
        created: 0,
    });
    apply_ok(&store, create);
    put(&store, "e", "v1").unwrap();
    apply_ok(&store, delete_at("e", 500));
    forget_index(&store, tables::PURGE_SCHEDULE);
    assert_eq!(earliest(&store), None);
    let path = dir.path().join("db.redb");
    drop(store);
    let reopened = Store::open(&path).unwrap();
    assert_eq!(earliest(&reopened), Some(500 + WEEK));
    let due = apply_ok(&reopened, Command::PurgeExpired { at: 500 + WEEK });
    assert_eq!(due, Applied::Purged { count: 1 });
}

/// Makes `store` look like one written before `index` existed: the index empty, and the
/// store in the layout of that time (object records with their version lists).
fn forget_index(store: &Store, index: redb::TableDefinition<&str, &[u8]>) {
    crate::layout_tests::write_version_list_layout(store);
    let txn = store.db.begin_write().unwrap();
    txn.open_table(index).unwrap().retain(|_, _| false).unwrap();
    txn.open_table(tables::META)
        .unwrap()
        .remove(tables::META_LAYOUT)
        .unwrap();
    txn.commit().unwrap();
}

/// Every way of writing the state moves the generation (the core's access cache depends on it);
/// reads and refused no-op writes aside, nothing else does.
#[test]
fn every_write_moves_the_generation() {
    let (_dir, store) = open();
    let last = std::cell::Cell::new(store.generation());
    let moved = |store: &Store, what: &str| {
        let now = store.generation();
        assert!(now > last.get(), "{what} did not move the generation");
        last.set(now);
    };
    let unmoved = |store: &Store, what: &str| {
        assert_eq!(
            store.generation(),
            last.get(),
            "{what} moved the generation"
        );
    };
    put(&store, "a", "1").unwrap();
    moved(&store, "append_and_apply");
    store
        .append_and_apply_batch(&[put_command("b", "1"), put_command("c", "1")])
        .unwrap();
    moved(&store, "append_and_apply_batch");
    let entry = LogEntry {
        index: 100,
        term: 1,
        command: put_command("d", "1"),
    };
    store.apply_entry(&entry).unwrap();
    moved(&store, "apply_entry");
    let replicated = crate::ReplicatedEntry {
        index: 101,
        commands: vec![put_command("e", "1")],
    };
    store
        .apply_replicated(&[replicated], "applied", b"x")
        .unwrap();
    moved(&store, "apply_replicated");
    store.sync_applied().unwrap();
    moved(&store, "sync_applied");
    let (data, _) = store.export_state("applied").unwrap();
    unmoved(&store, "export_state");
    store
        .import_state(&data, "applied", b"x", Some(101))
        .unwrap();
    moved(&store, "import_state");
    let _ = store.read().unwrap().last_applied().unwrap();
    unmoved(&store, "a read");
}
