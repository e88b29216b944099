//! Table definitions and key layout. Keys are strings built from lower-case names joined by
//! `/` (names never contain `/`), so a prefix range scan lists one vault's collection in order.

use crate::{codec, StoreError};
use keystead_model::{ObjectKind, ObjectName, VaultName};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};

/// index → encoded `LogEntry`.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// "deployment" → `Deployment`, "last_applied" → u64.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// vault name → `VaultSettings`.
pub(crate) const VAULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("vaults");
/// "vault/collection/name" → `ObjectRecord`.
pub(crate) const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// "vault/collection/name/version" → `VersionRecord`.
pub(crate) const VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("versions");
/// "vault/collection/name/position" → version id: every object's versions in creation order
/// (position 0 is the first), so listing a page of versions reads that page and nothing else.
/// Written in the same transactions as `versions`.
pub(crate) const VERSION_ORDER: TableDefinition<&str, &[u8]> =
    TableDefinition::new("version_order");
/// client id → `Principal`.
pub(crate) const PRINCIPALS: TableDefinition<&str, &[u8]> = TableDefinition::new("principals");
/// assignment id → `RoleAssignment`.
pub(crate) const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("role_assignments");
/// "principal/assignment id" → empty: which assignments a principal holds, so the per-request
/// authorization check reads only the caller's (derived from `role_assignments`, written in the
/// same transactions, built at open for older stores: `upgrade_layout`).
pub(crate) const ROLES_BY_PRINCIPAL: TableDefinition<&str, &[u8]> =
    TableDefinition::new("role_assignments_by_principal");

pub(crate) fn principal_role_key(principal: &str, id: &str) -> String {
    format!("{principal}/{id}")
}

/// "purge date/vault/collection/name" → empty: every soft-deleted object by its scheduled purge
/// date, so the retention timer finds what is due without reading every object (derived from
/// `objects`, written in the same transactions, built at open for older stores).
pub(crate) const PURGE_SCHEDULE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("purge_schedule");

/// The schedule key of an object purged at `date`: the date as 20 digits, its sign bit
/// flipped so that string order is date order for negative dates too.
pub(crate) fn purge_schedule_key(date: i64, object_key: &str) -> String {
    format!("{:020}/{object_key}", (date as u64) ^ (1 << 63))
}

/// The date and object key of a schedule key.
pub(crate) fn parse_purge_schedule_key(key: &str) -> Option<(i64, &str)> {
    let (date, object_key) = key.split_once('/')?;
    let date: u64 = date.parse().ok()?;
    Some(((date ^ (1 << 63)) as i64, object_key))
}

/// "vault/keys/name" → `RotationPolicy`.
pub(crate) const ROTATION_POLICIES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("rotation_policies");

/// "state" → `RegionState`, "seq" → u64 (the last vault command's stream sequence number).
pub(crate) const REGION: TableDefinition<&str, &[u8]> = TableDefinition::new("region");
/// zero-padded seq → `StreamEntry`: the most recent vault commands, for secondaries.
pub(crate) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("region_outbox");
/// record id → `DivergenceRecord`.
pub(crate) const DIVERGENCE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("region_divergence");

pub(crate) const REGION_STATE: &str = "state";
pub(crate) const REGION_SEQ: &str = "seq";

/// The outbox key of `seq`: fixed width, so string order is numeric order.
pub(crate) fn outbox_key(seq: u64) -> String {
    format!("{seq:020}")
}

pub(crate) const META_DEPLOYMENT: &str = "deployment";
pub(crate) const META_LAST_APPLIED: &str = "last_applied";

/// The vault state: what a cross-region snapshot carries, and part of a Raft snapshot. A new
/// state table goes here (or in `REGION_TABLES`) and so reaches every kind of snapshot.
///
/// Snapshots list their tables by position, and both lists only ever grow at the end: a
/// snapshot made by an older version is then a prefix of the current list, and installing it
/// empties the tables it does not have and upgrades the layout (`upgrade_layout`).
pub(crate) const VAULT_TABLES: [TableDefinition<&str, &[u8]>; 10] = [
    META,
    VAULTS,
    OBJECTS,
    VERSIONS,
    PRINCIPALS,
    ROLES,
    ROLES_BY_PRINCIPAL,
    ROTATION_POLICIES,
    PURGE_SCHEDULE,
    VERSION_ORDER,
];

/// This region's own replication state: in a Raft snapshot (the region's nodes share it),
/// never in a cross-region one.
pub(crate) const REGION_TABLES: [TableDefinition<&str, &[u8]>; 3] = [REGION, OUTBOX, DIVERGENCE];

/// How many vault tables there were when the region tables were added: a Raft snapshot lists
/// those, then the region tables, then the vault tables added since (append-only, see above).
const FIRST_VAULT_TABLES: usize = 9;

/// Every state table (everything but the logs), in Raft snapshot order.
pub(crate) fn state_tables() -> Vec<TableDefinition<'static, &'static str, &'static [u8]>> {
    [
        &VAULT_TABLES[..FIRST_VAULT_TABLES],
        REGION_TABLES.as_slice(),
        &VAULT_TABLES[FIRST_VAULT_TABLES..],
    ]
    .concat()
}

pub(crate) fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(LOG)?;
    for table in state_tables() {
        txn.open_table(table)?;
    }
    upgrade_layout(txn)
}

/// The layout of the state tables, in `META`, so it travels with the tables in every kind of
/// snapshot: 1 = role assignments indexed by principal; 2 = also the purge schedule; 3 = an
/// object record holds its current version and count, the order is in `version_order`.
/// (The key's name dates from when the layout only ever gained derived indexes.)
pub(crate) const META_LAYOUT: &str = "derived_indexes";
const LAYOUT: u64 = 3;

/// Brings a store (or an installed snapshot) written by an older version to the current
/// layout, once: afterwards every transaction keeps it. Checking a version rather than looking
/// at the data keeps a normal open from reading every object.
pub(crate) fn upgrade_layout(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let layout = get::<u64>(&meta, META_LAYOUT)?.unwrap_or(0);
    if layout >= LAYOUT {
        return Ok(());
    }
    if layout < 3 {
        move_version_lists(txn)?;
    }
    rebuild_index(txn, ROLES_BY_PRINCIPAL, ROLES, |_, value| {
        let assignment: keystead_model::RoleAssignment = codec::decode(value)?;
        Ok(Some(principal_role_key(
            &assignment.principal_id,
            &assignment.id,
        )))
    })?;
    rebuild_index(txn, PURGE_SCHEDULE, OBJECTS, |key, value| {
        let object: keystead_model::ObjectRecord = codec::decode(value)?;
        Ok(object
            .deleted
            .map(|d| purge_schedule_key(d.scheduled_purge_date, key)))
    })?;
    put(&mut meta, META_LAYOUT, &LAYOUT)
}

/// An object record as layouts 1 and 2 stored it: every version id in creation order.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ObjectRecordWithVersionList {
    pub(crate) name: ObjectName,
    pub(crate) kind: ObjectKind,
    pub(crate) versions: Vec<String>,
    pub(crate) deleted: Option<keystead_model::Deletion>,
}

/// Layout 2 → 3: each object's version list moves to `version_order`, and the record keeps
/// only its current version and count.
fn move_version_lists(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut objects = txn.open_table(OBJECTS)?;
    let mut order = txn.open_table(VERSION_ORDER)?;
    order.retain(|_, _| false)?;
    let mut upgraded = Vec::new();
    for row in objects.iter()? {
        let (key, value) = row?;
        let old: ObjectRecordWithVersionList = codec::decode(value.value())?;
        let Some(current) = old.versions.last().cloned() else {
            return Err(StoreError::Corrupt(format!(
                "object {} has no versions",
                key.value()
            )));
        };
        for (position, version) in old.versions.iter().enumerate() {
            put(
                &mut order,
                &version_order_key(key.value(), position as u64),
                version,
            )?;
        }
        let record = keystead_model::ObjectRecord {
            name: old.name,
            kind: old.kind,
            current_version: current,
            version_count: old.versions.len() as u64,
            deleted: old.deleted,
        };
        upgraded.push((key.value().to_string(), record));
    }
    for (key, record) in &upgraded {
        put(&mut objects, key, record)?;
    }
    Ok(())
}

/// Refills the key-only table `index` from `source`: `entry` gives a source row's index key,
/// if it has one.
fn rebuild_index(
    txn: &WriteTransaction,
    index: TableDefinition<&str, &[u8]>,
    source: TableDefinition<&str, &[u8]>,
    entry: impl Fn(&str, &[u8]) -> Result<Option<String>, StoreError>,
) -> Result<(), StoreError> {
    let mut index = txn.open_table(index)?;
    index.retain(|_, _| false)?;
    let source = txn.open_table(source)?;
    for row in source.iter()? {
        let (key, value) = row?;
        if let Some(index_key) = entry(key.value(), value.value())? {
            index.insert(index_key.as_str(), &[][..])?;
        }
    }
    Ok(())
}

/// The prefix of every object key of one collection in one vault.
pub(crate) fn collection_prefix(vault: &VaultName, kind: ObjectKind) -> String {
    format!("{}/{}/", vault.as_str(), kind.collection())
}

pub(crate) fn object_key(vault: &VaultName, kind: ObjectKind, name: &ObjectName) -> String {
    format!("{}{}", collection_prefix(vault, kind), name.key())
}

pub(crate) fn version_key(
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
    version: &str,
) -> String {
    format!("{}/{}", object_key(vault, kind, name), version)
}

/// The `version_order` key of the version at `position` (fixed width: string order is
/// creation order) of the object whose key is `object_key`.
pub(crate) fn version_order_key(object_key: &str, position: u64) -> String {
    format!("{object_key}/{position:020}")
}

/// The prefix of every row one object has in `versions` or `version_order`.
pub(crate) fn object_rows_prefix(object_key: &str) -> String {
    format!("{object_key}/")
}

/// The smallest string greater than every string starting with `prefix` ('/' + 1 = '0').
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    end.pop();
    end.push('0');
    end
}

pub(crate) fn get<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(bytes) => Ok(Some(codec::decode(bytes.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn put<T: Serialize>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    table.insert(key, codec::encode(value)?.as_slice())?;
    Ok(())
}

pub(crate) fn last_applied(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(META)?;
    Ok(get::<u64>(&meta, META_LAST_APPLIED)?.unwrap_or(0))
}
