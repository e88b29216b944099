//! Secret operations that touch values: set (seal, then propose) and get (authorize, then open).
//! Everything else about secrets is the shared object lifecycle in `objects`.

use crate::objects::{check_tags, ObjectState};
use crate::{Caller, CoreError, Node};
use keystead_crypto::random;
use keystead_model::access::actions;
use keystead_model::{
    Attributes, Command, ObjectKind, ObjectName, Payload, VaultName, VersionRecord,
};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Largest secret value Key Vault accepts (25 KB).
pub const MAX_SECRET_BYTES: usize = 25 * 1024;

/// A new secret version as the caller described it.
pub struct NewSecret {
    pub value: Zeroizing<String>,
    pub content_type: Option<String>,
    pub enabled: Option<bool>,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

/// A secret version with its plaintext value.
pub struct SecretValue {
    pub state: ObjectState,
    pub value: Zeroizing<String>,
}

/// AAD binding a sealed value to exactly one vault/collection/name/version, so ciphertext
/// cannot be moved between records.
pub(crate) fn value_aad(
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
    version: &str,
) -> Vec<u8> {
    format!(
        "keystead:v1:{}/{}/{}/{}",
        vault.as_str(),
        kind.collection(),
        name.key(),
        version
    )
    .into_bytes()
}

impl Node {
    pub async fn set_secret(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        secret: NewSecret,
    ) -> Result<SecretValue, CoreError> {
        let kind = ObjectKind::Secret;
        let settings = self.authorize(caller, vault, actions::SECRET_SET, Some((kind, name)))?;
        if secret.value.len() > MAX_SECRET_BYTES {
            return Err(CoreError::BadParameter(format!(
                "The secret value exceeds the maximum size of {MAX_SECRET_BYTES} bytes."
            )));
        }
        if secret.content_type.as_ref().is_some_and(|c| c.len() > 255) {
            return Err(CoreError::BadParameter(
                "contentType must be at most 255 characters".into(),
            ));
        }
        check_tags(&secret.tags)?;
        let version = random::new_version_id()?;
        let sealed = self.seal(
            &value_aad(vault, kind, name, &version),
            secret.value.as_bytes(),
        )?;
        let now = self.now();
        let record = VersionRecord {
            version,
            attributes: Attributes {
                enabled: secret.enabled.unwrap_or(true),
                not_before: secret.not_before,
                expires: secret.expires,
                created: now,
                updated: now,
            },
            tags: secret.tags,
            content_type: secret.content_type,
            payload: Payload::Secret { value: sealed },
        };
        let command = Command::PutVersion {
            vault: vault.clone(),
            kind,
            name: name.clone(),
            version: record,
        };
        let state = self.propose_object(settings, command).await?;
        Ok(SecretValue {
            state,
            value: secret.value,
        })
    }

    /// A secret version with its value (the latest when `version` is `None`). A disabled
    /// version is refused, as Azure does; `nbf`/`exp` are informational for secrets.
    pub fn get_secret(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        version: Option<&str>,
    ) -> Result<SecretValue, CoreError> {
        let kind = ObjectKind::Secret;
        let settings = self.authorize(caller, vault, actions::SECRET_GET, Some((kind, name)))?;
        let state = self.load_version(settings, kind, name, version)?;
        if !state.version.attributes.enabled {
            return Err(CoreError::Disabled {
                kind,
                name: name.to_string(),
            });
        }
        let value = self.open_secret_value(vault, name, &state.version)?;
        Ok(SecretValue { state, value })
    }

    pub(crate) fn open_secret_value(
        &self,
        vault: &VaultName,
        name: &ObjectName,
        version: &VersionRecord,
    ) -> Result<Zeroizing<String>, CoreError> {
        let Payload::Secret { value } = &version.payload else {
            return Err(CoreError::Internal(
                "the version holds no secret value".into(),
            ));
        };
        let aad = value_aad(vault, ObjectKind::Secret, name, &version.version);
        let plaintext = self.open_sealed(&aad, value)?;
        let text = std::str::from_utf8(&plaintext)
            .map_err(|_| CoreError::Internal("stored secret is not UTF-8".into()))?;
        Ok(Zeroizing::new(text.to_string()))
    }
}
