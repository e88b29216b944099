//! The state machine: applies one command to the tables inside the caller's write transaction.
//!
//! Deterministic by construction: it reads nothing but the tables and the command (no clock, no
//! randomness). Every refusal is decided before the first write, so a refused command leaves the
//! state unchanged and every replica refuses it the same way.

use crate::tables::{self, get, put};
use crate::{ApplyResult, StoreError};
use keystead_model::{
    rules, Applied, ApplyError, AttributesPatch, Command, Deployment, KeyOp, ObjectKind,
    ObjectName, ObjectRecord, Payload, Principal, ReleasePolicy, RoleAssignment, RotationPolicy,
    VaultName, VaultSettings, VersionRecord,
};
use redb::{ReadableTable, Table, WriteTransaction};

/// Why an apply step stopped: a deterministic refusal, or a storage failure.
pub(crate) enum Failure {
    Refused(ApplyError),
    Store(StoreError),
}

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        Failure::Refused(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<redb::TableError> for Failure {
    fn from(e: redb::TableError) -> Self {
        Failure::Store(e.into())
    }
}

impl From<redb::StorageError> for Failure {
    fn from(e: redb::StorageError) -> Self {
        Failure::Store(e.into())
    }
}

pub(crate) type Step = Result<Applied, Failure>;
type Bytes<'t> = Table<'t, &'static str, &'static [u8]>;

pub(crate) fn apply(
    txn: &WriteTransaction,
    index: u64,
    command: &Command,
) -> Result<ApplyResult, StoreError> {
    let result = match step(txn, command) {
        Ok(applied) => Ok(applied),
        Err(Failure::Refused(e)) => Err(e),
        Err(Failure::Store(e)) => return Err(e),
    };
    let mut meta = txn.open_table(tables::META)?;
    put(&mut meta, tables::META_LAST_APPLIED, &index)?;
    Ok(result)
}

/// Applies one command: region commands by the region rules; vault commands only where the
/// region state admits them, recorded in the outbox when a region is configured.
fn step(txn: &WriteTransaction, command: &Command) -> Step {
    if command.is_region_local() {
        return crate::region::apply(txn, command);
    }
    let region = crate::region::admit(txn)?;
    let applied = dispatch(txn, command.inner())?;
    if let Some(region) = region {
        crate::region::append_outbox(txn, &region, command)?;
    }
    Ok(applied)
}

/// Applies one vault command (no region rules).
pub(crate) fn dispatch(txn: &WriteTransaction, command: &Command) -> Step {
    match command {
        Command::InitDeployment(deployment) => init_deployment(txn, deployment),
        Command::CreateVault(settings) => create_vault(txn, settings),
        Command::EnablePurgeProtection { vault } => enable_purge_protection(txn, vault),
        Command::DeleteVault { vault } => delete_vault(txn, vault),
        Command::CreatePrincipal(principal) => create_principal(txn, principal),
        Command::DeletePrincipal { client_id } => delete_principal(txn, client_id),
        Command::AssignRole(assignment) => assign_role(txn, assignment),
        Command::RemoveRole { id } => remove_role(txn, id),
        Command::PutVersion {
            vault,
            kind,
            name,
            version,
        } => put_version(txn, vault, *kind, name, version),
        Command::UpdateVersion {
            vault,
            kind,
            name,
            version,
            patch,
            at,
        } => update_version(
            txn,
            vault,
            *kind,
            name,
            version.as_deref(),
            patch,
            *at,
            |_| Ok(()),
        ),
        Command::DeleteObject {
            vault,
            kind,
            name,
            at,
        } => {
            let settings = vault_settings(txn, vault)?;
            let (mut objects, versions) = object_tables(txn)?;
            let object = load_object(&objects, vault, *kind, name)?;
            let mut object = rules::active(*kind, name, object.as_ref())?.clone();
            object.deleted = Some(rules::deletion(&settings, *at));
            put(
                &mut objects,
                &tables::object_key(vault, *kind, name),
                &object,
            )?;
            set_purge_schedule(txn, vault, &object, true)?;
            let version = latest_record(&versions, vault, &object)?;
            Ok(Applied::Object { object, version })
        }
        Command::RecoverObject { vault, kind, name } => {
            vault_settings(txn, vault)?;
            let (mut objects, versions) = object_tables(txn)?;
            let object = load_object(&objects, vault, *kind, name)?;
            let mut object = rules::deleted(*kind, name, object.as_ref())?.clone();
            set_purge_schedule(txn, vault, &object, false)?;
            object.deleted = None;
            put(
                &mut objects,
                &tables::object_key(vault, *kind, name),
                &object,
            )?;
            let version = latest_record(&versions, vault, &object)?;
            Ok(Applied::Object { object, version })
        }
        Command::PurgeObject { vault, kind, name } => {
            let settings = vault_settings(txn, vault)?;
            let (mut objects, mut versions) = object_tables(txn)?;
            let object = load_object(&objects, vault, *kind, name)?;
            let object = rules::deleted(*kind, name, object.as_ref())?.clone();
            rules::check_purge(&settings)?;
            remove_object(txn, &mut objects, &mut versions, vault, &object)?;
            remove_rotation_policy(txn, vault, &object)?;
            Ok(Applied::Purged { count: 1 })
        }
        Command::PurgeExpired { at } => purge_expired(txn, *at),
        Command::UpdateKey {
            vault,
            name,
            version,
            patch,
            key_ops,
            release_policy,
            at,
        } => update_key(
            txn,
            vault,
            name,
            version.as_deref(),
            patch,
            key_ops.as_deref(),
            release_policy.as_ref(),
            *at,
        ),
        Command::SetRotationPolicy {
            vault,
            name,
            policy,
        } => set_rotation_policy(txn, vault, name, policy),
        Command::RotateKey {
            vault,
            name,
            replaces,
            version,
        } => {
            vault_settings(txn, vault)?;
            let (objects, _) = object_tables(txn)?;
            let object = load_object(&objects, vault, ObjectKind::Key, name)?;
            let object = rules::active(ObjectKind::Key, name, object.as_ref())?;
            if object.latest_version() != replaces {
                return Err(ApplyError::RotationSuperseded {
                    name: name.to_string(),
                    replaces: replaces.clone(),
                }
                .into());
            }
            drop(objects);
            put_version(txn, vault, ObjectKind::Key, name, version)
        }
        Command::RestoreObject {
            vault,
            kind,
            name,
            versions: restored,
        } => {
            vault_settings(txn, vault)?;
            let (mut objects, mut versions) = object_tables(txn)?;
            let existing = load_object(&objects, vault, *kind, name)?;
            rules::check_restore(*kind, name, existing.as_ref())?;
            let Some(last) = restored.last().cloned() else {
                return Err(
                    ApplyError::Invalid("a restore needs at least one version".into()).into(),
                );
            };
            let object_key = tables::object_key(vault, *kind, name);
            let mut order = txn.open_table(tables::VERSION_ORDER)?;
            for (position, version) in restored.iter().enumerate() {
                let key = tables::version_key(vault, *kind, name, &version.version);
                put(&mut versions, &key, version)?;
                let order_key = tables::version_order_key(&object_key, position as u64);
                put(&mut order, &order_key, &version.version)?;
            }
            let object = ObjectRecord {
                name: name.clone(),
                kind: *kind,
                current_version: last.version.clone(),
                version_count: restored.len() as u64,
                deleted: None,
            };
            put(
                &mut objects,
                &tables::object_key(vault, *kind, name),
                &object,
            )?;
            Ok(Applied::Object {
                object,
                version: last,
            })
        }
        Command::Attributed { command, .. } => dispatch(txn, command),
        Command::SetRegion { .. }
        | Command::Replicate { .. }
        | Command::InstallRegionSnapshot { .. }
        | Command::PutDivergence(_) => crate::region::apply(txn, command),
    }
}

fn object_tables(txn: &WriteTransaction) -> Result<(Bytes<'_>, Bytes<'_>), Failure> {
    Ok((
        txn.open_table(tables::OBJECTS)?,
        txn.open_table(tables::VERSIONS)?,
    ))
}

fn vault_settings(txn: &WriteTransaction, vault: &VaultName) -> Result<VaultSettings, Failure> {
    let vaults = txn.open_table(tables::VAULTS)?;
    get(&vaults, vault.as_str())?.ok_or_else(|| ApplyError::VaultNotFound(vault.to_string()).into())
}

fn load_object(
    objects: &Bytes,
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
) -> Result<Option<ObjectRecord>, Failure> {
    Ok(get(objects, &tables::object_key(vault, kind, name))?)
}

fn latest_record(
    versions: &Bytes,
    vault: &VaultName,
    object: &ObjectRecord,
) -> Result<VersionRecord, Failure> {
    let key = tables::version_key(vault, object.kind, &object.name, object.latest_version());
    get(versions, &key)?.ok_or_else(|| StoreError::Corrupt(format!("missing version {key}")).into())
}

fn remove_object(
    txn: &WriteTransaction,
    objects: &mut Bytes,
    versions: &mut Bytes,
    vault: &VaultName,
    object: &ObjectRecord,
) -> Result<(), Failure> {
    let object_key = tables::object_key(vault, object.kind, &object.name);
    let prefix = tables::object_rows_prefix(&object_key);
    let end = tables::prefix_end(&prefix);
    remove_range(versions, &prefix, &end)?;
    remove_range(&mut txn.open_table(tables::VERSION_ORDER)?, &prefix, &end)?;
    objects.remove(object_key.as_str())?;
    set_purge_schedule(txn, vault, object, false)
}

/// Puts a soft-deleted object on the purge schedule (`listed`), or takes it off (recovered,
/// purged, vault deleted); objects that are not deleted are never on it.
fn set_purge_schedule(
    txn: &WriteTransaction,
    vault: &VaultName,
    object: &ObjectRecord,
    listed: bool,
) -> Result<(), Failure> {
    let Some(deleted) = &object.deleted else {
        return Ok(());
    };
    let object_key = tables::object_key(vault, object.kind, &object.name);
    let key = tables::purge_schedule_key(deleted.scheduled_purge_date, &object_key);
    let mut schedule = txn.open_table(tables::PURGE_SCHEDULE)?;
    if listed {
        schedule.insert(key.as_str(), &[][..])?;
    } else {
        schedule.remove(key.as_str())?;
    }
    Ok(())
}

fn put_version(
    txn: &WriteTransaction,
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
    version: &VersionRecord,
) -> Step {
    vault_settings(txn, vault)?;
    let (mut objects, mut versions) = object_tables(txn)?;
    let existing = load_object(&objects, vault, kind, name)?;
    let key = tables::version_key(vault, kind, name, &version.version);
    let stored = match &existing {
        Some(_) => get::<VersionRecord>(&versions, &key)?,
        None => None,
    };
    // The same command applied twice (a forwarded write retried across a leader change carries
    // the same random 128-bit version id and the same record): answer as the first time did.
    if let (Some(object), Some(stored)) = (&existing, &stored) {
        if stored == version {
            return Ok(Applied::Object {
                object: object.clone(),
                version: version.clone(),
            });
        }
    }
    rules::check_put(
        kind,
        name,
        existing.as_ref(),
        &version.version,
        stored.is_some(),
    )?;
    let object_key = tables::object_key(vault, kind, name);
    let object = match existing {
        Some(mut object) => {
            object.current_version = version.version.clone();
            object.version_count += 1;
            object
        }
        None => ObjectRecord::new(name.clone(), kind, version.version.clone()),
    };
    put(&mut versions, &key, version)?;
    put(
        &mut txn.open_table(tables::VERSION_ORDER)?,
        &tables::version_order_key(&object_key, object.version_count - 1),
        &version.version,
    )?;
    put(&mut objects, &object_key, &object)?;
    Ok(Applied::Object {
        object,
        version: version.clone(),
    })
}

/// Patches one version's attributes. `edit` makes the kind's own changes to the record (or
/// refuses the update) after the version is found and before anything is written, so the
/// record is written once.
#[allow(clippy::too_many_arguments)]
fn update_version(
    txn: &WriteTransaction,
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
    version: Option<&str>,
    patch: &AttributesPatch,
    at: i64,
    edit: impl FnOnce(&mut VersionRecord) -> Result<(), Failure>,
) -> Step {
    vault_settings(txn, vault)?;
    let (objects, mut versions) = object_tables(txn)?;
    let object = load_object(&objects, vault, kind, name)?;
    let object = rules::active(kind, name, object.as_ref())?.clone();
    let version_id = version.unwrap_or(object.latest_version());
    let key = tables::version_key(vault, kind, name, version_id);
    let Some(mut record) = get::<VersionRecord>(&versions, &key)? else {
        return Err(ApplyError::VersionNotFound {
            kind,
            name: name.to_string(),
            version: version_id.to_string(),
        }
        .into());
    };
    edit(&mut record)?;
    patch.apply_to(&mut record, at);
    put(&mut versions, &key, &record)?;
    Ok(Applied::Object {
        object,
        version: record,
    })
}

/// A purged key takes its rotation policy with it.
fn remove_rotation_policy(
    txn: &WriteTransaction,
    vault: &VaultName,
    object: &ObjectRecord,
) -> Result<(), Failure> {
    if object.kind == ObjectKind::Key {
        let mut policies = txn.open_table(tables::ROTATION_POLICIES)?;
        policies.remove(tables::object_key(vault, object.kind, &object.name).as_str())?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn update_key(
    txn: &WriteTransaction,
    vault: &VaultName,
    name: &ObjectName,
    version: Option<&str>,
    patch: &AttributesPatch,
    key_ops: Option<&[KeyOp]>,
    release_policy: Option<&ReleasePolicy>,
    at: i64,
) -> Step {
    let edit_key = |record: &mut VersionRecord| -> Result<(), Failure> {
        if key_ops.is_none() && release_policy.is_none() {
            return Ok(());
        }
        // Only keystead-core writes the keys collection, always with key material: anything
        // else is corruption, and a store error aborts the whole transaction.
        let Payload::Key { key } = &mut record.payload else {
            return Err(StoreError::Corrupt(format!("key {name} holds no key material")).into());
        };
        if let Some(new) = release_policy {
            // An immutable release policy stays as it is (Key Vault refuses to change it); the
            // same policy sent again is not a change.
            if key
                .release_policy
                .as_ref()
                .is_some_and(|old| old.immutable && old != new)
            {
                return Err(ApplyError::Invalid(
                    "The key's release policy is immutable and cannot be changed.".into(),
                )
                .into());
            }
            key.release_policy = Some(new.clone());
        }
        if let Some(ops) = key_ops {
            key.key_ops = ops.to_vec();
        }
        Ok(())
    };
    update_version(
        txn,
        vault,
        ObjectKind::Key,
        name,
        version,
        patch,
        at,
        edit_key,
    )
}

fn set_rotation_policy(
    txn: &WriteTransaction,
    vault: &VaultName,
    name: &ObjectName,
    policy: &RotationPolicy,
) -> Step {
    let kind = ObjectKind::Key;
    vault_settings(txn, vault)?;
    let (objects, _) = object_tables(txn)?;
    let object = load_object(&objects, vault, kind, name)?;
    rules::active(kind, name, object.as_ref())?;
    let mut policies = txn.open_table(tables::ROTATION_POLICIES)?;
    let key = tables::object_key(vault, kind, name);
    // Keep the original creation time across updates.
    let mut policy = policy.clone();
    if let Some(old) = get::<RotationPolicy>(&policies, &key)? {
        policy.created = old.created;
    }
    put(&mut policies, &key, &policy)?;
    Ok(Applied::Done)
}

/// Purges every soft-deleted object whose scheduled purge date is at or before `at`, reading
/// only the due part of the purge schedule.
fn purge_expired(txn: &WriteTransaction, at: i64) -> Step {
    let mut due_keys = Vec::new();
    {
        let schedule = txn.open_table(tables::PURGE_SCHEDULE)?;
        for row in schedule.iter()? {
            let (key, _) = row?;
            let (date, object_key) = tables::parse_purge_schedule_key(key.value())
                .ok_or_else(|| StoreError::Corrupt(format!("bad schedule key {}", key.value())))?;
            if date > at {
                break;
            }
            due_keys.push((key.value().to_string(), date, object_key.to_string()));
        }
    }
    let (mut objects, mut versions) = object_tables(txn)?;
    let mut due = Vec::with_capacity(due_keys.len());
    for (schedule_key, date, key) in &due_keys {
        let object: Option<ObjectRecord> = get(&objects, key)?;
        match object {
            Some(object)
                if object
                    .deleted
                    .as_ref()
                    .is_some_and(|d| d.scheduled_purge_date == *date) =>
            {
                let vault = key.split('/').next().and_then(VaultName::parse);
                let vault = vault.ok_or_else(|| StoreError::Corrupt(format!("bad key {key}")))?;
                due.push((vault, object));
            }
            // An entry that no longer matches its object (never expected: every change of
            // `deleted` updates the schedule) is dropped rather than failing the command,
            // which may share its transaction with others.
            _ => {
                txn.open_table(tables::PURGE_SCHEDULE)?
                    .remove(schedule_key.as_str())?;
            }
        }
    }
    for (vault, object) in &due {
        remove_object(txn, &mut objects, &mut versions, vault, object)?;
        remove_rotation_policy(txn, vault, object)?;
    }
    Ok(Applied::Purged {
        count: due.len() as u64,
    })
}

fn init_deployment(txn: &WriteTransaction, deployment: &Deployment) -> Step {
    let mut meta = txn.open_table(tables::META)?;
    if get::<Deployment>(&meta, tables::META_DEPLOYMENT)?.is_some() {
        return Err(ApplyError::AlreadyInitialized.into());
    }
    put(&mut meta, tables::META_DEPLOYMENT, deployment)?;
    Ok(Applied::Done)
}

fn create_vault(txn: &WriteTransaction, settings: &VaultSettings) -> Step {
    let mut vaults = txn.open_table(tables::VAULTS)?;
    if get::<VaultSettings>(&vaults, settings.name.as_str())?.is_some() {
        return Err(ApplyError::VaultExists(settings.name.to_string()).into());
    }
    put(&mut vaults, settings.name.as_str(), settings)?;
    Ok(Applied::Vault(settings.clone()))
}

fn enable_purge_protection(txn: &WriteTransaction, vault: &VaultName) -> Step {
    let mut settings = vault_settings(txn, vault)?;
    settings.purge_protection = true;
    let mut vaults = txn.open_table(tables::VAULTS)?;
    put(&mut vaults, vault.as_str(), &settings)?;
    Ok(Applied::Vault(settings))
}

fn delete_vault(txn: &WriteTransaction, vault: &VaultName) -> Step {
    let settings = vault_settings(txn, vault)?;
    let (mut objects, mut versions) = object_tables(txn)?;
    let prefix = format!("{}/", vault.as_str());
    let end = tables::prefix_end(&prefix);
    let object_keys = keys_in(&objects, &prefix, &end)?;
    if settings.purge_protection && !object_keys.is_empty() {
        return Err(ApplyError::VaultProtected(vault.to_string()).into());
    }
    for key in object_keys {
        let object: Option<ObjectRecord> = get(&objects, &key)?;
        if let Some(object) = object {
            set_purge_schedule(txn, vault, &object, false)?;
        }
        objects.remove(key.as_str())?;
    }
    remove_range(&mut versions, &prefix, &end)?;
    remove_range(&mut txn.open_table(tables::VERSION_ORDER)?, &prefix, &end)?;
    remove_range(
        &mut txn.open_table(tables::ROTATION_POLICIES)?,
        &prefix,
        &end,
    )?;
    let roles = txn.open_table(tables::ROLES)?;
    let mut doomed = Vec::new();
    for row in roles.iter()? {
        let (_, value) = row?;
        let assignment: RoleAssignment = crate::codec::decode(value.value())?;
        if &assignment.scope.vault == vault {
            doomed.push(assignment);
        }
    }
    drop(roles);
    for assignment in &doomed {
        remove_assignment(txn, assignment)?;
    }
    txn.open_table(tables::VAULTS)?.remove(vault.as_str())?;
    Ok(Applied::Done)
}

/// Removes every row whose key is in `start..end`.
fn remove_range(table: &mut Bytes, start: &str, end: &str) -> Result<(), Failure> {
    table.retain_in(start..end, |_, _| false)?;
    Ok(())
}

fn keys_in(table: &Bytes, start: &str, end: &str) -> Result<Vec<String>, Failure> {
    let mut keys = Vec::new();
    for row in table.range(start..end)? {
        keys.push(row?.0.value().to_string());
    }
    Ok(keys)
}

fn create_principal(txn: &WriteTransaction, principal: &Principal) -> Step {
    let mut principals = txn.open_table(tables::PRINCIPALS)?;
    if get::<Principal>(&principals, &principal.client_id)?.is_some() {
        return Err(ApplyError::PrincipalExists(principal.client_id.clone()).into());
    }
    put(&mut principals, &principal.client_id, principal)?;
    Ok(Applied::Done)
}

fn delete_principal(txn: &WriteTransaction, client_id: &str) -> Step {
    let mut principals = txn.open_table(tables::PRINCIPALS)?;
    if principals.remove(client_id)?.is_none() {
        return Err(ApplyError::PrincipalNotFound(client_id.to_string()).into());
    }
    let roles = txn.open_table(tables::ROLES)?;
    let mut doomed = Vec::new();
    for row in roles.iter()? {
        let (_, value) = row?;
        let assignment: RoleAssignment = crate::codec::decode(value.value())?;
        if assignment.principal_id == client_id {
            doomed.push(assignment);
        }
    }
    drop(roles);
    for assignment in &doomed {
        remove_assignment(txn, assignment)?;
    }
    Ok(Applied::Done)
}

fn assign_role(txn: &WriteTransaction, assignment: &RoleAssignment) -> Step {
    vault_settings(txn, &assignment.scope.vault)?;
    let principals = txn.open_table(tables::PRINCIPALS)?;
    if get::<Principal>(&principals, &assignment.principal_id)?.is_none() {
        return Err(ApplyError::PrincipalNotFound(assignment.principal_id.clone()).into());
    }
    let mut roles = txn.open_table(tables::ROLES)?;
    if get::<RoleAssignment>(&roles, &assignment.id)?.is_some() {
        return Err(ApplyError::RoleAssignmentExists(assignment.id.clone()).into());
    }
    put(&mut roles, &assignment.id, assignment)?;
    txn.open_table(tables::ROLES_BY_PRINCIPAL)?.insert(
        tables::principal_role_key(&assignment.principal_id, &assignment.id).as_str(),
        &[][..],
    )?;
    Ok(Applied::Done)
}

fn remove_role(txn: &WriteTransaction, id: &str) -> Step {
    let roles = txn.open_table(tables::ROLES)?;
    let Some(assignment) = get::<RoleAssignment>(&roles, id)? else {
        return Err(ApplyError::RoleAssignmentNotFound(id.to_string()).into());
    };
    drop(roles);
    remove_assignment(txn, &assignment)?;
    Ok(Applied::Done)
}

/// Removes an assignment and its index entry.
fn remove_assignment(txn: &WriteTransaction, assignment: &RoleAssignment) -> Result<(), Failure> {
    txn.open_table(tables::ROLES)?
        .remove(assignment.id.as_str())?;
    txn.open_table(tables::ROLES_BY_PRINCIPAL)?
        .remove(tables::principal_role_key(&assignment.principal_id, &assignment.id).as_str())?;
    Ok(())
}
