//! Lifecycle operations shared by every object kind: list, versions, update, soft delete,
//! deleted views, recover, purge. Each checks the caller's role for the kind's data action.

use crate::{Caller, CoreError, Node};
use keystead_model::access::actions;
use keystead_model::{
    Action, Applied, ApplyError, AttributesPatch, Command, ObjectKind, ObjectName, ObjectRecord,
    VaultName, VaultSettings, VersionRecord,
};
use keystead_store::Page;

/// Most items one list page may hold (Key Vault's `maxresults` ceiling).
pub const MAX_PAGE: usize = 25;

/// The data actions that guard each lifecycle operation of a kind.
pub struct KindActions {
    pub read_metadata: Action,
    pub update: Action,
    pub delete: Action,
    pub recover: Action,
    pub purge: Action,
    pub backup: Action,
    pub restore: Action,
}

pub fn kind_actions(kind: ObjectKind) -> &'static KindActions {
    const SECRETS: KindActions = KindActions {
        read_metadata: actions::SECRET_READ_METADATA,
        update: actions::SECRET_UPDATE,
        delete: actions::SECRET_DELETE,
        recover: actions::SECRET_RECOVER,
        purge: actions::SECRET_PURGE,
        backup: actions::SECRET_BACKUP,
        restore: actions::SECRET_RESTORE,
    };
    const KEYS: KindActions = KindActions {
        read_metadata: actions::KEY_READ,
        update: actions::KEY_UPDATE,
        delete: actions::KEY_DELETE,
        recover: actions::KEY_RECOVER,
        purge: actions::KEY_PURGE,
        backup: actions::KEY_BACKUP,
        restore: actions::KEY_RESTORE,
    };
    match kind {
        ObjectKind::Key => &KEYS,
        // Certificates reuse the secrets' actions until their own operations land.
        ObjectKind::Secret | ObjectKind::Certificate => &SECRETS,
    }
}

/// An object, one of its versions, and the vault settings needed to render it.
#[derive(Debug, Clone)]
pub struct ObjectState {
    pub vault: VaultSettings,
    pub object: ObjectRecord,
    pub version: VersionRecord,
}

impl Node {
    pub(crate) async fn propose_object(
        &self,
        vault: VaultSettings,
        command: Command,
    ) -> Result<ObjectState, CoreError> {
        match self.propose(command).await? {
            Applied::Object { object, version } => Ok(ObjectState {
                vault,
                object,
                version,
            }),
            other => Err(CoreError::Internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// Active objects of a kind, one page, each with its latest version.
    pub fn list_objects(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        deleted: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ObjectState>, CoreError> {
        let settings = self.authorize(caller, vault, kind_actions(kind).read_metadata, None)?;
        let page =
            self.read()?
                .list_objects(vault, kind, deleted, after, limit.clamp(1, MAX_PAGE))?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(object, version)| ObjectState {
                    vault: settings.clone(),
                    object,
                    version,
                })
                .collect(),
            next: page.next,
        })
    }

    /// The versions of one active object, in creation order, one page.
    pub fn list_versions(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(VaultSettings, ObjectRecord, Page<VersionRecord>), CoreError> {
        let settings = self.authorize(
            caller,
            vault,
            kind_actions(kind).read_metadata,
            Some((kind, name)),
        )?;
        let read = self.read()?;
        let object = read.object(vault, kind, name)?;
        let object = keystead_model::rules::active(kind, name, object.as_ref())?;
        // The continuation token is the creation-order position of the next version.
        let from = match after {
            Some(token) => token
                .parse::<u64>()
                .map_err(|_| CoreError::BadParameter("the skip token is not valid".into()))?,
            None => 0,
        };
        let (items, more) =
            read.versions_in_order(vault, kind, name, from, limit.clamp(1, MAX_PAGE))?;
        let next = more.then(|| (from + items.len() as u64).to_string());
        Ok((settings, object.clone(), Page { items, next }))
    }

    /// An active object and one version of it (the latest when `version` is `None`), with no
    /// RBAC check: callers check the action that fits their operation first.
    pub(crate) fn load_version(
        &self,
        vault: VaultSettings,
        kind: ObjectKind,
        name: &ObjectName,
        version: Option<&str>,
    ) -> Result<ObjectState, CoreError> {
        let read = self.read()?;
        let object = read.object(&vault.name, kind, name)?;
        let object = keystead_model::rules::active(kind, name, object.as_ref())?.clone();
        let version_id = match version {
            Some(v) => v.to_ascii_lowercase(),
            None => object.latest_version().to_string(),
        };
        let record = read.version(&vault.name, kind, name, &version_id)?;
        let version = record.ok_or_else(|| ApplyError::VersionNotFound {
            kind,
            name: name.to_string(),
            version: version_id,
        })?;
        Ok(ObjectState {
            vault,
            object,
            version,
        })
    }

    pub async fn update_version(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
        version: Option<&str>,
        patch: AttributesPatch,
    ) -> Result<ObjectState, CoreError> {
        let settings =
            self.authorize(caller, vault, kind_actions(kind).update, Some((kind, name)))?;
        check_patch(&patch)?;
        let command = Command::UpdateVersion {
            vault: vault.clone(),
            kind,
            name: name.clone(),
            version: version.map(str::to_ascii_lowercase),
            patch,
            at: self.now(),
        };
        self.propose_object(settings, command).await
    }

    pub async fn delete_object(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectState, CoreError> {
        let settings =
            self.authorize(caller, vault, kind_actions(kind).delete, Some((kind, name)))?;
        let command = Command::DeleteObject {
            vault: vault.clone(),
            kind,
            name: name.clone(),
            at: self.now(),
        };
        let deleted = self.propose_object(settings, command).await;
        self.forget_if_key(kind, vault, name);
        deleted
    }

    /// A soft-deleted object with its latest version.
    pub fn get_deleted(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectState, CoreError> {
        let settings = self.authorize(
            caller,
            vault,
            kind_actions(kind).read_metadata,
            Some((kind, name)),
        )?;
        let read = self.read()?;
        let object = read.object(vault, kind, name)?;
        let object = keystead_model::rules::deleted(kind, name, object.as_ref())?.clone();
        let version = read
            .version(vault, kind, name, object.latest_version())?
            .ok_or_else(|| CoreError::Internal("missing latest version".into()))?;
        Ok(ObjectState {
            vault: settings,
            object,
            version,
        })
    }

    pub async fn recover_object(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<ObjectState, CoreError> {
        let settings = self.authorize(
            caller,
            vault,
            kind_actions(kind).recover,
            Some((kind, name)),
        )?;
        let command = Command::RecoverObject {
            vault: vault.clone(),
            kind,
            name: name.clone(),
        };
        self.propose_object(settings, command).await
    }

    pub async fn purge_object(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<(), CoreError> {
        self.authorize(caller, vault, kind_actions(kind).purge, Some((kind, name)))?;
        let command = Command::PurgeObject {
            vault: vault.clone(),
            kind,
            name: name.clone(),
        };
        let purged = self.propose(command).await.map(|_| ());
        self.forget_if_key(kind, vault, name);
        purged
    }

    /// After a delete or purge (whatever its outcome: forgetting costs at most a re-parse),
    /// drops the object's parsed private keys so they do not stay in memory until evicted.
    /// Correctness does not depend on it: operations check the record first, and a deleted
    /// key is refused there. An operation racing the delete may re-insert an entry; the idle
    /// sweep removes it.
    fn forget_if_key(&self, kind: ObjectKind, vault: &VaultName, name: &ObjectName) {
        if kind == ObjectKind::Key {
            self.forget_parsed_keys(vault, name);
        }
    }
}

/// Bounds shared by every kind's mutable fields.
pub(crate) fn check_patch(patch: &AttributesPatch) -> Result<(), CoreError> {
    if let Some(content_type) = &patch.content_type {
        if content_type.len() > 255 {
            return Err(CoreError::BadParameter(
                "contentType must be at most 255 characters".into(),
            ));
        }
    }
    if let Some(tags) = &patch.tags {
        check_tags(tags)?;
    }
    Ok(())
}

pub(crate) fn check_tags(
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<(), CoreError> {
    if tags.len() > 15 {
        return Err(CoreError::BadParameter(
            "at most 15 tags are allowed".into(),
        ));
    }
    if tags
        .iter()
        .any(|(k, v)| k.is_empty() || k.len() > 512 || v.len() > 256)
    {
        return Err(CoreError::BadParameter(
            "tag names must be 1-512 characters and tag values at most 256".into(),
        ));
    }
    Ok(())
}
