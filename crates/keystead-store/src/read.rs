//! Reads: typed getters over one consistent redb read transaction. Reads never touch the log.

use crate::tables::{self, get};
use crate::{codec, StoreError};
use keystead_model::{
    Deployment, ObjectKind, ObjectName, ObjectRecord, Principal, RoleAssignment, RotationPolicy,
    VaultName, VaultSettings, VersionRecord,
};
use redb::{ReadTransaction, ReadableTable};

/// One page of a listing and the continuation point, if there is more.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque to callers: pass it back as `after` to get the next page.
    pub next: Option<String>,
}

pub struct ReadView {
    txn: ReadTransaction,
}

impl ReadView {
    pub(crate) fn new(txn: ReadTransaction) -> ReadView {
        ReadView { txn }
    }

    pub fn deployment(&self) -> Result<Option<Deployment>, StoreError> {
        let meta = self.txn.open_table(tables::META)?;
        get(&meta, tables::META_DEPLOYMENT)
    }

    pub fn last_applied(&self) -> Result<u64, StoreError> {
        let meta = self.txn.open_table(tables::META)?;
        Ok(get::<u64>(&meta, tables::META_LAST_APPLIED)?.unwrap_or(0))
    }

    /// This region's topology view, once a region is configured.
    pub fn region_state(&self) -> Result<Option<keystead_model::RegionState>, StoreError> {
        crate::region::read_state(&self.txn)
    }

    /// The stream position this node's state reflects.
    pub fn region_seq(&self) -> Result<u64, StoreError> {
        crate::region::read_seq(&self.txn)
    }

    /// Stream entries from `from` (inclusive), at most `limit`, and the oldest one still held.
    pub fn region_outbox(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<keystead_model::StreamEntry>, Option<u64>), StoreError> {
        crate::region::read_outbox(&self.txn, from, limit)
    }

    pub fn divergences(&self) -> Result<Vec<keystead_model::DivergenceRecord>, StoreError> {
        crate::region::read_divergences(&self.txn)
    }

    pub fn vault(&self, name: &VaultName) -> Result<Option<VaultSettings>, StoreError> {
        let vaults = self.txn.open_table(tables::VAULTS)?;
        get(&vaults, name.as_str())
    }

    pub fn vaults(&self) -> Result<Vec<VaultSettings>, StoreError> {
        self.all(tables::VAULTS)
    }

    pub fn object(
        &self,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let objects = self.txn.open_table(tables::OBJECTS)?;
        get(&objects, &tables::object_key(vault, kind, name))
    }

    pub fn version(
        &self,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
        version: &str,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let versions = self.txn.open_table(tables::VERSIONS)?;
        get(&versions, &tables::version_key(vault, kind, name, version))
    }

    /// The versions of one object in creation order, from position `from` (0 is the first
    /// version), at most `limit`, and whether more follow. Reads only the rows of that page.
    pub fn versions_in_order(
        &self,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<VersionRecord>, bool), StoreError> {
        let order = self.txn.open_table(tables::VERSION_ORDER)?;
        let object_key = tables::object_key(vault, kind, name);
        let start = tables::version_order_key(&object_key, from);
        let end = tables::prefix_end(&tables::object_rows_prefix(&object_key));
        let mut rows = order.range(start.as_str()..end.as_str())?;
        let mut items = Vec::new();
        for row in rows.by_ref().take(limit) {
            let id: String = codec::decode(row?.1.value())?;
            let version = self
                .version(vault, kind, name, &id)?
                .ok_or_else(|| StoreError::Corrupt(format!("missing version {id} of {name}")))?;
            items.push(version);
        }
        Ok((items, rows.next().is_some()))
    }

    /// Objects of one collection, in name order, either the active or the soft-deleted ones,
    /// each with its latest version.
    pub fn list_objects(
        &self,
        vault: &VaultName,
        kind: ObjectKind,
        deleted: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<(ObjectRecord, VersionRecord)>, StoreError> {
        let objects = self.txn.open_table(tables::OBJECTS)?;
        let prefix = tables::collection_prefix(vault, kind);
        let end = tables::prefix_end(&prefix);
        // Continue strictly after the last name returned: append a byte below every name byte.
        let start = match after {
            Some(last) => format!("{prefix}{}\u{1}", last.to_ascii_lowercase()),
            None => prefix.clone(),
        };
        let mut items = Vec::new();
        let mut next = None;
        for row in objects.range(start.as_str()..end.as_str())? {
            let (_, value) = row?;
            let object: ObjectRecord = codec::decode(value.value())?;
            if object.deleted.is_some() != deleted {
                continue;
            }
            if items.len() == limit {
                next = items
                    .last()
                    .map(|(o, _): &(ObjectRecord, VersionRecord)| o.name.key());
                break;
            }
            let version = self
                .version(vault, kind, &object.name, object.latest_version())?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("missing version of {}", object.name))
                })?;
            items.push((object, version));
        }
        Ok(Page { items, next })
    }

    /// The earliest scheduled purge date of any soft-deleted object: the first entry of the
    /// purge schedule.
    pub fn earliest_purge_date(&self) -> Result<Option<i64>, StoreError> {
        let schedule = self.txn.open_table(tables::PURGE_SCHEDULE)?;
        let first = schedule.first()?;
        match first {
            Some((key, _)) => tables::parse_purge_schedule_key(key.value())
                .map(|(date, _)| Some(date))
                .ok_or_else(|| StoreError::Corrupt(format!("bad schedule key {}", key.value()))),
            None => Ok(None),
        }
    }

    pub fn rotation_policy(
        &self,
        vault: &VaultName,
        name: &ObjectName,
    ) -> Result<Option<RotationPolicy>, StoreError> {
        let policies = self.txn.open_table(tables::ROTATION_POLICIES)?;
        get(&policies, &tables::object_key(vault, ObjectKind::Key, name))
    }

    /// Every stored rotation policy with its vault and (lower-cased) key name.
    pub fn rotation_policies(
        &self,
    ) -> Result<Vec<(VaultName, ObjectName, RotationPolicy)>, StoreError> {
        let policies = self.txn.open_table(tables::ROTATION_POLICIES)?;
        let mut out = Vec::new();
        for row in policies.iter()? {
            let (key, value) = row?;
            let key = key.value();
            let mut parts = key.split('/');
            let vault = parts.next().and_then(VaultName::parse);
            let name = parts.nth(1).and_then(ObjectName::parse);
            let (Some(vault), Some(name)) = (vault, name) else {
                return Err(StoreError::Corrupt(format!("bad policy key {key}")));
            };
            out.push((vault, name, codec::decode(value.value())?));
        }
        Ok(out)
    }

    pub fn principal(&self, client_id: &str) -> Result<Option<Principal>, StoreError> {
        let principals = self.txn.open_table(tables::PRINCIPALS)?;
        get(&principals, client_id)
    }

    pub fn principals(&self) -> Result<Vec<Principal>, StoreError> {
        self.all(tables::PRINCIPALS)
    }

    pub fn role_assignments(&self) -> Result<Vec<RoleAssignment>, StoreError> {
        self.all(tables::ROLES)
    }

    /// The assignments `principal` holds (through the per-principal index).
    pub fn role_assignments_of(&self, principal: &str) -> Result<Vec<RoleAssignment>, StoreError> {
        let index = self.txn.open_table(tables::ROLES_BY_PRINCIPAL)?;
        let roles = self.txn.open_table(tables::ROLES)?;
        let prefix = format!("{principal}/");
        let end = tables::prefix_end(&prefix);
        let mut out = Vec::new();
        for row in index.range(prefix.as_str()..end.as_str())? {
            let (key, _) = row?;
            let id = &key.value()[prefix.len()..];
            if let Some(assignment) = get::<RoleAssignment>(&roles, id)? {
                out.push(assignment);
            }
        }
        Ok(out)
    }

    fn all<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<&'static str, &'static [u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let table = self.txn.open_table(table)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(codec::decode(row?.1.value())?);
        }
        Ok(out)
    }
}
