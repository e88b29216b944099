//! Key Vault's JSON shapes: request bodies we accept and the bundles and list results we
//! return. Field names and id formats follow the 2026-04-01 Swagger.

use keystead_core::objects::ObjectState;
use keystead_model::{
    AttributesPatch, ObjectKind, Payload, PublicKey, ReleasePolicy, RotationPolicy,
    RotationTrigger, VaultSettings, VersionRecord,
};
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

// ------------------------------------------------------------------------------------- keys

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `attributes` of key requests: the common ones plus `exportable`.
#[derive(Deserialize, Default)]
pub(crate) struct KeyAttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub exportable: Option<bool>,
}

/// KeyReleasePolicy (`data` is base64url).
#[derive(Deserialize)]
pub(crate) struct ReleasePolicyIn {
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub immutable: Option<bool>,
    pub data: Option<String>,
}

/// KeyCreateParameters.
#[derive(Deserialize)]
pub(crate) struct KeyCreateParameters {
    pub kty: String,
    pub key_size: Option<u32>,
    pub public_exponent: Option<u32>,
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<KeyAttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
    pub crv: Option<String>,
    pub release_policy: Option<ReleasePolicyIn>,
}

/// A JSON Web Key in an import request. Private fields are wiped on drop.
#[derive(Deserialize, Default)]
pub(crate) struct JwkIn {
    pub kty: Option<String>,
    pub key_ops: Option<Vec<String>>,
    pub crv: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    pub d: Option<String>,
    pub p: Option<String>,
    pub q: Option<String>,
    pub dp: Option<String>,
    pub dq: Option<String>,
    pub qi: Option<String>,
    pub k: Option<String>,
    /// BYOK transfer blob (HSM-protected import), which Keystead cannot accept.
    pub key_hsm: Option<String>,
}

impl Drop for JwkIn {
    fn drop(&mut self) {
        for field in [
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.qi,
            &mut self.k,
        ] {
            zeroize::Zeroize::zeroize(field);
        }
    }
}

/// KeyImportParameters.
#[derive(Deserialize)]
pub(crate) struct KeyImportParameters {
    #[serde(rename = "Hsm")]
    pub hsm: Option<bool>,
    pub key: JwkIn,
    pub attributes: Option<KeyAttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
    pub release_policy: Option<ReleasePolicyIn>,
}

/// KeyUpdateParameters.
#[derive(Deserialize)]
pub(crate) struct KeyUpdateParameters {
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<KeyAttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
    pub release_policy: Option<ReleasePolicyIn>,
}

/// KeyOperationsParameters, KeySignParameters and KeyVerifyParameters in one shape.
#[derive(Deserialize)]
pub(crate) struct KeyOperationParameters {
    pub alg: String,
    pub value: String,
    pub iv: Option<String>,
    pub aad: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct TriggerIn {
    #[serde(rename = "timeAfterCreate")]
    pub time_after_create: Option<String>,
    #[serde(rename = "timeBeforeExpiry")]
    pub time_before_expiry: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ActionIn {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Deserialize)]
pub(crate) struct LifetimeActionIn {
    pub trigger: Option<TriggerIn>,
    pub action: Option<ActionIn>,
}

#[derive(Deserialize, Default)]
pub(crate) struct PolicyAttributesIn {
    #[serde(rename = "expiryTime")]
    pub expiry_time: Option<String>,
}

/// KeyRotationPolicy (request).
#[derive(Deserialize)]
pub(crate) struct RotationPolicyIn {
    #[serde(rename = "lifetimeActions")]
    pub lifetime_actions: Option<Vec<LifetimeActionIn>>,
    pub attributes: Option<PolicyAttributesIn>,
}

/// GetRandomBytesRequest.
#[derive(Deserialize)]
pub(crate) struct RandomBytesRequest {
    pub count: i64,
}

impl Render {
    /// The public JWK of a key version. Never private parts; `kty` never claims an HSM.
    pub fn jwk(&self, state: &ObjectState) -> Value {
        let mut out = Map::new();
        out.insert(
            "kid".into(),
            json!(self.object_id(
                ObjectKind::Key,
                state.object.name.as_str(),
                Some(&state.version.version)
            )),
        );
        if let Payload::Key { key } = &state.version.payload {
            out.insert("kty".into(), json!(key.public.key_type().jwk_name()));
            let ops: Vec<&str> = key.key_ops.iter().map(|op| op.as_str()).collect();
            out.insert("key_ops".into(), json!(ops));
            match &key.public {
                PublicKey::Rsa { n, e } => {
                    out.insert("n".into(), json!(b64(n)));
                    out.insert("e".into(), json!(b64(e)));
                }
                PublicKey::Ec { crv, x, y } => {
                    out.insert("crv".into(), json!(crv.jwk_name()));
                    out.insert("x".into(), json!(b64(x)));
                    out.insert("y".into(), json!(b64(y)));
                }
                PublicKey::Oct { .. } => {}
            }
        }
        Value::Object(out)
    }

    fn key_attributes(&self, state: &ObjectState) -> Value {
        let mut attributes = self.attributes(&state.version, &state.vault);
        if let (Value::Object(map), Payload::Key { key }) =
            (&mut attributes, &state.version.payload)
        {
            map.insert("exportable".into(), json!(key.exportable));
            // Keystead holds every key in software, also when an -HSM type was requested.
            map.insert("protection".into(), json!("software"));
        }
        attributes
    }

    fn release_policy(&self, policy: &ReleasePolicy) -> Value {
        let mut out = Map::new();
        if let Some(ct) = &policy.content_type {
            out.insert("contentType".into(), json!(ct));
        }
        out.insert("immutable".into(), json!(policy.immutable));
        out.insert("data".into(), json!(b64(&policy.data)));
        Value::Object(out)
    }

    /// KeyBundle.
    pub fn key_bundle(&self, state: &ObjectState) -> Value {
        let mut out = Map::new();
        out.insert("key".into(), self.jwk(state));
        out.insert("attributes".into(), self.key_attributes(state));
        if !state.version.tags.is_empty() {
            out.insert("tags".into(), json!(state.version.tags));
        }
        if let Payload::Key { key } = &state.version.payload {
            if let Some(policy) = &key.release_policy {
                out.insert("release_policy".into(), self.release_policy(policy));
            }
        }
        Value::Object(out)
    }

    /// DeletedKeyBundle.
    pub fn deleted_key_bundle(&self, state: &ObjectState) -> Value {
        let mut value = self.key_bundle(state);
        if let Value::Object(out) = &mut value {
            self.deletion(state, out);
        }
        value
    }

    /// KeyItem: a base `kid` in collection lists, a versioned one in version lists.
    pub fn key_item(&self, state: &ObjectState, versioned_id: bool) -> Value {
        let name = state.object.name.as_str();
        let version = versioned_id.then_some(state.version.version.as_str());
        let mut out = Map::new();
        out.insert(
            "kid".into(),
            json!(self.object_id(ObjectKind::Key, name, version)),
        );
        out.insert("attributes".into(), self.key_attributes(state));
        if !state.version.tags.is_empty() {
            out.insert("tags".into(), json!(state.version.tags));
        }
        Value::Object(out)
    }

    pub fn deleted_key_item(&self, state: &ObjectState) -> Value {
        let mut out = match self.key_item(state, false) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        self.deletion(state, &mut out);
        Value::Object(out)
    }

    /// KeyRotationPolicy; with no stored policy, Key Vault's default (notify 30 days before
    /// expiry).
    pub fn rotation_policy(&self, name: &str, policy: Option<&RotationPolicy>) -> Value {
        let id = format!("{}/keys/{name}/rotationpolicy", self.base);
        let Some(policy) = policy else {
            return json!({
                "id": id,
                "lifetimeActions": [
                    {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}
                ],
                "attributes": {}
            });
        };
        let actions: Vec<Value> = policy
            .lifetime_actions
            .iter()
            .map(|a| {
                let trigger = match &a.trigger {
                    RotationTrigger::AfterCreate(d) => json!({"timeAfterCreate": d}),
                    RotationTrigger::BeforeExpiry(d) => json!({"timeBeforeExpiry": d}),
                };
                json!({"trigger": trigger, "action": {"type": a.action.as_str()}})
            })
            .collect();
        let mut attributes = Map::new();
        if let Some(expiry) = &policy.expiry_time {
            attributes.insert("expiryTime".into(), json!(expiry));
        }
        attributes.insert("created".into(), json!(policy.created));
        attributes.insert("updated".into(), json!(policy.updated));
        json!({"id": id, "lifetimeActions": actions, "attributes": attributes})
    }
}
