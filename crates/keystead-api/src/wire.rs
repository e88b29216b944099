//! Key Vault's JSON shapes: request bodies we accept and the bundles and list results we
//! return. Field names and id formats follow the 2026-04-01 Swagger.

use keystead_core::objects::ObjectState;
use keystead_model::{AttributesPatch, ObjectKind, VaultSettings, VersionRecord};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// `attributes` in request bodies. Read-only fields the SDKs may echo back are ignored.
#[derive(Deserialize, Default)]
pub(crate) struct AttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// SecretSetParameters.
#[derive(Deserialize)]
pub(crate) struct SecretSetParameters {
    pub value: String,
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub attributes: Option<AttributesIn>,
}

/// SecretUpdateParameters (and the common shape of the other kinds' updates).
#[derive(Deserialize)]
pub(crate) struct UpdateParameters {
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

impl UpdateParameters {
    pub fn into_patch(self) -> AttributesPatch {
        let attributes = self.attributes.unwrap_or_default();
        AttributesPatch {
            enabled: attributes.enabled,
            not_before: attributes.nbf,
            expires: attributes.exp,
            content_type: self.content_type,
            tags: self.tags,
        }
    }
}

/// `{"value": "<base64url>"}`: backup results and restore requests.
#[derive(Deserialize)]
pub(crate) struct BlobParameters {
    pub value: String,
}

/// Builds ids and renders bundles for one vault as the client addressed it.
pub(crate) struct Render {
    /// `https://<vault host>[:port]`
    pub base: String,
}

impl Render {
    pub fn object_id(&self, kind: ObjectKind, name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}/{}/{name}/{v}", self.base, kind.collection()),
            None => format!("{}/{}/{name}", self.base, kind.collection()),
        }
    }

    pub fn recovery_id(&self, kind: ObjectKind, name: &str) -> String {
        format!("{}/{}/{name}", self.base, kind.deleted_collection())
    }

    pub fn attributes(&self, version: &VersionRecord, vault: &VaultSettings) -> Value {
        let a = &version.attributes;
        let mut out = Map::new();
        out.insert("enabled".into(), json!(a.enabled));
        if let Some(nbf) = a.not_before {
            out.insert("nbf".into(), json!(nbf));
        }
        if let Some(exp) = a.expires {
            out.insert("exp".into(), json!(exp));
        }
        out.insert("created".into(), json!(a.created));
        out.insert("updated".into(), json!(a.updated));
        out.insert(
            "recoveryLevel".into(),
            json!(vault.recovery_level().as_str()),
        );
        out.insert("recoverableDays".into(), json!(vault.retention_days));
        Value::Object(out)
    }

    /// Fields every secret rendering shares: id, attributes, tags, contentType.
    fn secret_common(&self, state: &ObjectState, versioned_id: bool) -> Map<String, Value> {
        let name = state.object.name.as_str();
        let version = versioned_id.then_some(state.version.version.as_str());
        let mut out = Map::new();
        out.insert(
            "id".into(),
            json!(self.object_id(ObjectKind::Secret, name, version)),
        );
        out.insert(
            "attributes".into(),
            self.attributes(&state.version, &state.vault),
        );
        if !state.version.tags.is_empty() {
            out.insert("tags".into(), json!(state.version.tags));
        }
        if let Some(ct) = &state.version.content_type {
            out.insert("contentType".into(), json!(ct));
        }
        out
    }

    fn deletion(&self, state: &ObjectState, out: &mut Map<String, Value>) {
        out.insert(
            "recoveryId".into(),
            json!(self.recovery_id(state.object.kind, state.object.name.as_str())),
        );
        if let Some(d) = &state.object.deleted {
            out.insert("deletedDate".into(), json!(d.deleted_date));
            out.insert("scheduledPurgeDate".into(), json!(d.scheduled_purge_date));
        }
    }

    /// SecretBundle; `value` is omitted for responses that carry none (update, recover).
    pub fn secret_bundle(&self, state: &ObjectState, value: Option<&str>) -> Value {
        let mut out = self.secret_common(state, true);
        if let Some(value) = value {
            out.insert("value".into(), json!(value));
        }
        Value::Object(out)
    }

    /// DeletedSecretBundle (never with a value).
    pub fn deleted_secret_bundle(&self, state: &ObjectState) -> Value {
        let mut out = self.secret_common(state, true);
        self.deletion(state, &mut out);
        Value::Object(out)
    }

    /// SecretItem: a base id in collection lists, a versioned id in version lists.
    pub fn secret_item(&self, state: &ObjectState, versioned_id: bool) -> Value {
        Value::Object(self.secret_common(state, versioned_id))
    }

    pub fn deleted_secret_item(&self, state: &ObjectState) -> Value {
        let mut out = self.secret_common(state, false);
        self.deletion(state, &mut out);
        Value::Object(out)
    }
}

/// A list result: `{"value": [...], "nextLink": "<absolute url>" | null}`.
pub(crate) fn list_result(items: Vec<Value>, next_link: Option<String>) -> Value {
    json!({ "value": items, "nextLink": next_link })
}
