//! Tests of the state tables' layout: every object's versions kept in creation order beside it
//! (`version_order`), and the upgrade of stores and snapshots written in the older layout where
//! each object record held its whole version list.

use crate::raft::StateDump;
use crate::tables::{self, ObjectRecordWithVersionList};
use crate::tests::{
    apply_ok, delete_at, name, open, put, put_command, vault, version, version_ids,
};
use crate::{codec, Store};
use keystead_model::*;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

/// Rewrites `store` in layout 2: each object record holds its version list, `version_order`
/// is empty, and `META` says layout 2.
pub(crate) fn write_version_list_layout(store: &Store) {
    let txn = store.db.begin_write().unwrap();
    {
        let mut objects = txn.open_table(tables::OBJECTS).unwrap();
        let mut order = txn.open_table(tables::VERSION_ORDER).unwrap();
        let mut old_records = Vec::new();
        for row in objects.iter().unwrap() {
            let (key, value) = row.unwrap();
            let object: ObjectRecord = codec::decode(value.value()).unwrap();
            let prefix = tables::object_rows_prefix(key.value());
            let end = tables::prefix_end(&prefix);
            let versions = order
                .range(prefix.as_str()..end.as_str())
                .unwrap()
                .map(|row| codec::decode::<String>(row.unwrap().1.value()).unwrap())
                .collect();
            let old = ObjectRecordWithVersionList {
                name: object.name,
                kind: object.kind,
                versions,
                deleted: object.deleted,
            };
            old_records.push((key.value().to_string(), old));
        }
        for (key, old) in old_records {
            tables::put(&mut objects, &key, &old).unwrap();
        }
        order.retain(|_, _| false).unwrap();
        let mut meta = txn.open_table(tables::META).unwrap();
        tables::put(&mut meta, tables::META_LAYOUT, &2u64).unwrap();
    }
    txn.commit().unwrap();
}

fn order_rows(store: &Store) -> u64 {
    let txn = store.db.begin_read().unwrap();
    txn.open_table(tables::VERSION_ORDER)
        .unwrap()
        .len()
        .unwrap()
}

fn object(store: &Store, n: &str) -> ObjectRecord {
    store
        .read()
        .unwrap()
        .object(&vault(), ObjectKind::Secret, &name(n))
        .unwrap()
        .unwrap()
}

#[test]
fn versions_are_read_in_creation_order_one_page_at_a_time() {
    let (_dir, store) = open();
    let ids: Vec<String> = (0..30).map(|i| format!("v{i:02}")).collect();
    // Creation order, not id order: write the ids backwards.
    for id in ids.iter().rev() {
        put(&store, "a", id).unwrap();
    }
    // A name that extends "a" keeps its rows apart.
    put(&store, "ab", "x").unwrap();
    let backwards: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(version_ids(&store, ObjectKind::Secret, "a"), backwards);
    assert_eq!(version_ids(&store, ObjectKind::Secret, "ab"), ["x"]);

    let read = store.read().unwrap();
    let page = |from, limit| {
        let (items, more) = read
            .versions_in_order(&vault(), ObjectKind::Secret, &name("a"), from, limit)
            .unwrap();
        let ids: Vec<String> = items.into_iter().map(|v| v.version).collect();
        (ids, more)
    };
    assert_eq!(page(10, 7), (backwards[10..17].to_vec(), true));
    assert_eq!(page(25, 10), (backwards[25..].to_vec(), false));
    assert_eq!(page(30, 10), (Vec::new(), false));
    let a = object(&store, "a");
    assert_eq!((a.latest_version(), a.version_count), ("v00", 30));
}

#[test]
fn purge_restore_and_vault_deletion_keep_the_version_order_exact() {
    let (_dir, store) = open();
    for id in ["v1", "v2", "v3"] {
        put(&store, "a", id).unwrap();
    }
    put(&store, "b", "w1").unwrap();
    let purge = Command::PurgeObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("a"),
    };
    apply_ok(&store, delete_at("a", 100));
    apply_ok(&store, purge);
    assert!(version_ids(&store, ObjectKind::Secret, "a").is_empty());
    assert_eq!(order_rows(&store), 1, "only b's row is left");

    // A name written again after its purge starts a new order.
    put(&store, "a", "n1").unwrap();
    assert_eq!(version_ids(&store, ObjectKind::Secret, "a"), ["n1"]);

    // A restore writes the versions in the order the backup lists them.
    let restore = Command::RestoreObject {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("c"),
        versions: vec![version("r2", 5), version("r1", 6), version("r3", 7)],
    };
    apply_ok(&store, restore);
    assert_eq!(
        version_ids(&store, ObjectKind::Secret, "c"),
        ["r2", "r1", "r3"]
    );
    let c = object(&store, "c");
    assert_eq!((c.latest_version(), c.version_count), ("r3", 3));
    put(&store, "c", "r4").unwrap();
    assert_eq!(
        version_ids(&store, ObjectKind::Secret, "c"),
        ["r2", "r1", "r3", "r4"]
    );

    apply_ok(&store, Command::DeleteVault { vault: vault() });
    assert_eq!(order_rows(&store), 0);
}

/// A store with an object of three versions and a soft-deleted one, rewritten in layout 2.
fn store_in_version_list_layout() -> (tempfile::TempDir, Store) {
    let (dir, store) = open();
    for id in ["v3", "v1", "v2"] {
        put(&store, "a", id).unwrap();
    }
    put(&store, "gone", "g1").unwrap();
    apply_ok(&store, delete_at("gone", 100));
    write_version_list_layout(&store);
    (dir, store)
}

/// What an upgraded copy of `store_in_version_list_layout` must hold.
fn check_upgraded(store: &Store) {
    assert_eq!(
        version_ids(store, ObjectKind::Secret, "a"),
        ["v3", "v1", "v2"]
    );
    let a = object(store, "a");
    assert_eq!((a.latest_version(), a.version_count), ("v2", 3));
    let gone = object(store, "gone");
    assert_eq!(gone.latest_version(), "g1");
    assert!(gone.deleted.is_some());
    assert_eq!(
        store.read().unwrap().earliest_purge_date().unwrap(),
        gone.deleted.map(|d| d.scheduled_purge_date)
    );
    // The next version goes after the upgraded ones.
    store
        .append_and_apply(&put_command("a", "v4"))
        .unwrap()
        .1
        .unwrap();
    assert_eq!(
        version_ids(store, ObjectKind::Secret, "a"),
        ["v3", "v1", "v2", "v4"]
    );
}

#[test]
fn a_store_in_the_version_list_layout_is_upgraded_at_open() {
    let (dir, store) = store_in_version_list_layout();
    drop(store);
    let reopened = Store::open(&dir.path().join("db.redb")).unwrap();
    check_upgraded(&reopened);
}

#[test]
fn a_snapshot_from_an_older_version_installs_and_is_upgraded() {
    let (_dir, old) = store_in_version_list_layout();
    // The older version's snapshot lists every table but `version_order`, the last one.
    let (data, _) = old.export_state("applied").unwrap();
    let mut dump: StateDump = codec::decode(&data).unwrap();
    assert_eq!(dump.tables.len(), tables::state_tables().len());
    assert_eq!(dump.tables.pop(), Some(Vec::new()));
    let older = codec::encode(&dump).unwrap();

    let (_dir2, fresh) = open();
    fresh
        .import_state(&older, "applied", b"x", Some(9))
        .unwrap();
    check_upgraded(&fresh);

    // A snapshot with a table this version does not know comes from a newer version.
    dump.tables.push(Vec::new());
    dump.tables.push(Vec::new());
    let newer = codec::encode(&dump).unwrap();
    let (_dir3, other) = open();
    let err = other
        .import_state(&newer, "applied", b"x", Some(9))
        .unwrap_err();
    assert!(err.to_string().contains("newer version"), "{err}");
    // The refused install changed nothing.
    assert!(other
        .read()
        .unwrap()
        .object(&vault(), ObjectKind::Secret, &name("a"))
        .unwrap()
        .is_none());
}
