//! The lifecycle rules every replica enforces when applying object commands. Pure functions over
//! the current record so they can be tested without a store.

use crate::{ApplyError, Deletion, ObjectKind, ObjectName, ObjectRecord, UnixTime, VaultSettings};

/// May a new version be added to `existing`? A soft-deleted name is reserved until it is
/// recovered or purged. `version_exists`: the object already has a version with this id.
pub fn check_put(
    kind: ObjectKind,
    name: &ObjectName,
    existing: Option<&ObjectRecord>,
    version: &str,
    version_exists: bool,
) -> Result<(), ApplyError> {
    match existing {
        Some(record) if record.deleted.is_some() => Err(ApplyError::DeletedButRecoverable {
            kind,
            name: name.to_string(),
        }),
        Some(_) if version_exists => Err(ApplyError::VersionExists {
            kind,
            name: name.to_string(),
            version: version.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The active (not deleted) object, or the right not-found error.
pub fn active<'a>(
    kind: ObjectKind,
    name: &ObjectName,
    existing: Option<&'a ObjectRecord>,
) -> Result<&'a ObjectRecord, ApplyError> {
    match existing {
        Some(record) if record.deleted.is_none() => Ok(record),
        _ => Err(ApplyError::ObjectNotFound {
            kind,
            name: name.to_string(),
        }),
    }
}

/// The soft-deleted object, or the right not-found error.
pub fn deleted<'a>(
    kind: ObjectKind,
    name: &ObjectName,
    existing: Option<&'a ObjectRecord>,
) -> Result<&'a ObjectRecord, ApplyError> {
    match existing {
        Some(record) if record.deleted.is_some() => Ok(record),
        _ => Err(ApplyError::DeletedObjectNotFound {
            kind,
            name: name.to_string(),
        }),
    }
}

/// The deletion record for an object deleted at `at` in `vault`.
pub fn deletion(vault: &VaultSettings, at: UnixTime) -> Deletion {
    Deletion {
        deleted_date: at,
        scheduled_purge_date: at.saturating_add(vault.retention_seconds()),
    }
}

/// A caller's purge: refused while the vault has purge protection.
pub fn check_purge(vault: &VaultSettings) -> Result<(), ApplyError> {
    if vault.purge_protection {
        Err(ApplyError::PurgeProtected {
            vault: vault.name.to_string(),
        })
    } else {
        Ok(())
    }
}

/// Restore needs the name to be entirely free in the target vault.
pub fn check_restore(
    kind: ObjectKind,
    name: &ObjectName,
    existing: Option<&ObjectRecord>,
) -> Result<(), ApplyError> {
    match existing {
        None => Ok(()),
        Some(record) if record.deleted.is_some() => Err(ApplyError::DeletedButRecoverable {
            kind,
            name: name.to_string(),
        }),
        Some(_) => Err(ApplyError::ObjectExists {
            kind,
            name: name.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VaultName;

    fn record(deleted: bool) -> ObjectRecord {
        ObjectRecord {
            name: ObjectName::parse("s").unwrap(),
            kind: ObjectKind::Secret,
            current_version: "v1".into(),
            version_count: 1,
            deleted: deleted.then_some(Deletion {
                deleted_date: 1,
                scheduled_purge_date: 2,
            }),
        }
    }

    #[test]
    fn deleted_names_are_reserved() {
        let name = ObjectName::parse("s").unwrap();
        assert!(check_put(ObjectKind::Secret, &name, None, "v2", false).is_ok());
        assert!(check_put(ObjectKind::Secret, &name, Some(&record(false)), "v2", false).is_ok());
        assert!(matches!(
            check_put(ObjectKind::Secret, &name, Some(&record(true)), "v2", false),
            Err(ApplyError::DeletedButRecoverable { .. })
        ));
        assert!(matches!(
            check_put(ObjectKind::Secret, &name, Some(&record(false)), "v1", true),
            Err(ApplyError::VersionExists { .. })
        ));
        assert!(matches!(
            check_restore(ObjectKind::Secret, &name, Some(&record(false))),
            Err(ApplyError::ObjectExists { .. })
        ));
    }

    #[test]
    fn purge_protection_and_retention() {
        let mut vault = VaultSettings {
            name: VaultName::parse("demo").unwrap(),
            retention_days: 7,
            purge_protection: false,
            created: 0,
        };
        assert_eq!(deletion(&vault, 100).scheduled_purge_date, 100 + 7 * 86_400);
        assert!(check_purge(&vault).is_ok());
        vault.purge_protection = true;
        assert!(check_purge(&vault).is_err());
    }
}
