//! Per-object backup and restore. A backup blob holds every version of one object with its
//! plaintext value, serialized and then sealed under the deployment's KEK with a fixed AAD —
//! so it is confidential and authenticated, and restorable only where the same key hierarchy
//! is loaded. Restore re-seals each value for its new vault.

use crate::objects::{kind_actions, ObjectState};
use crate::secrets::value_aad;
use crate::{Caller, CoreError, Node};
use keystead_crypto::SealedBox;
use keystead_model::{Command, ObjectKind, ObjectName, Payload, VaultName, VersionRecord};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Key Vault refuses to back up objects with more versions than this.
pub const MAX_BACKUP_VERSIONS: usize = 500;

const BACKUP_FORMAT: u32 = 1;

fn backup_aad(kind: ObjectKind) -> Vec<u8> {
    format!("keystead:v1:backup/{}", kind.collection()).into_bytes()
}

#[derive(Serialize, Deserialize)]
struct BackupContents {
    format: u32,
    kind: ObjectKind,
    name: ObjectName,
    versions: Vec<BackupVersion>,
}

#[derive(Serialize, Deserialize)]
struct BackupVersion {
    record: VersionRecord,
    value: Vec<u8>,
}

impl Drop for BackupVersion {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl Node {
    /// Returns the sealed backup blob of every version of an active object.
    pub fn backup_object(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        name: &ObjectName,
    ) -> Result<Vec<u8>, CoreError> {
        self.authorize(caller, vault, kind_actions(kind).backup, Some((kind, name)))?;
        let read = self.read()?;
        let object = read.object(vault, kind, name)?;
        let object = keystead_model::rules::active(kind, name, object.as_ref())?.clone();
        if object.version_count > MAX_BACKUP_VERSIONS as u64 {
            return Err(CoreError::BadParameter(format!(
                "objects with more than {MAX_BACKUP_VERSIONS} versions cannot be backed up"
            )));
        }
        let (records, more) = read.versions_in_order(vault, kind, name, 0, MAX_BACKUP_VERSIONS)?;
        if more {
            return Err(CoreError::Internal(format!(
                "{name} has more versions than its count says"
            )));
        }
        let mut versions = Vec::with_capacity(records.len());
        for record in records {
            let value: Vec<u8> = match (kind, &record.payload) {
                (ObjectKind::Secret, _) => self
                    .open_secret_value(vault, name, &record)?
                    .as_bytes()
                    .to_vec(),
                (ObjectKind::Key, Payload::Key { key }) => self
                    .open_key(vault, name, &record.version, &key.private)?
                    .to_vec(),
                _ => return Err(CoreError::BadParameter("unsupported object kind".into())),
            };
            versions.push(BackupVersion { record, value });
        }
        let contents = BackupContents {
            format: BACKUP_FORMAT,
            kind,
            name: object.name.clone(),
            versions,
        };
        let plaintext = Zeroizing::new(
            postcard::to_stdvec(&contents).map_err(|e| CoreError::Internal(e.to_string()))?,
        );
        let sealed = self.kek.seal(&backup_aad(kind), &plaintext)?;
        postcard::to_stdvec(&sealed).map_err(|e| CoreError::Internal(e.to_string()))
    }

    /// Restores a blob produced by [`Node::backup_object`] into `vault`, keeping the original
    /// name and version ids. Returns the latest version.
    pub async fn restore_object(
        &self,
        caller: &Caller,
        vault: &VaultName,
        kind: ObjectKind,
        blob: &[u8],
    ) -> Result<ObjectState, CoreError> {
        // Authorize before opening the blob; the name is only known after opening it.
        let settings = self.authorize(caller, vault, kind_actions(kind).restore, None)?;
        let sealed: SealedBox = postcard::from_bytes(blob).map_err(|_| CoreError::BadBackup)?;
        let plaintext = self
            .kek
            .open(&backup_aad(kind), &sealed)
            .map_err(|_| CoreError::BadBackup)?;
        let contents: BackupContents =
            postcard::from_bytes(&plaintext).map_err(|_| CoreError::BadBackup)?;
        if contents.format != BACKUP_FORMAT || contents.kind != kind || contents.versions.is_empty()
        {
            return Err(CoreError::BadBackup);
        }
        let name = contents.name.clone();
        let mut records = Vec::with_capacity(contents.versions.len());
        for version in &contents.versions {
            let mut record = version.record.clone();
            // Re-seal for the target vault: the AAD names vault/collection/name/version.
            let sealed = self.seal(
                &value_aad(vault, kind, &name, &record.version),
                &version.value,
            )?;
            record.payload = match (kind, record.payload) {
                (ObjectKind::Secret, _) => Payload::Secret { value: sealed },
                (ObjectKind::Key, Payload::Key { mut key }) => {
                    key.private = sealed;
                    Payload::Key { key }
                }
                _ => return Err(CoreError::BadBackup),
            };
            records.push(record);
        }
        let command = Command::RestoreObject {
            vault: vault.clone(),
            kind,
            name,
            versions: records,
        };
        self.propose_object(settings, command).await
    }
}
