//! The keys routes of the Key Vault data plane (akv-api.md §3, "Keys"), the cryptographic
//! operations (with a version, without one, and as `/keys/{name}//op`) and `/rng`.

use crate::error::ApiError;
use crate::lifecycle::{self, KindWire};
use crate::request::{parse_json, read_body, read_body_limited, sanitize, MAX_RESTORE_BODY_BYTES};
use crate::router::{BodyIn, VaultCtx};
use crate::secrets::{decode_base64url, object_name, ok, render};
use crate::wire::Render;
use crate::wire::{
    BlobParameters, JwkIn, KeyAttributesIn, KeyCreateParameters, KeyImportParameters,
    KeyOperationParameters, KeyUpdateParameters, RandomBytesRequest, ReleasePolicyIn,
    RotationPolicyIn,
};
use axum::http::Method;
use axum::response::Response;
use base64::Engine;
use keystead_core::keys::{ImportedJwk, KeyOperation, KeyProps, KeySpec, OperationInput};
use keystead_model::{
    AttributesPatch, Curve, KeyOp, KeyType, LifetimeAction, ObjectKind, ReleasePolicy,
    RotationAction, RotationTrigger,
};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

const KIND: ObjectKind = ObjectKind::Key;

/// How keys render in the shared lifecycle routes.
const KEYS: KindWire = KindWire {
    kind: KIND,
    item: Render::key_item,
    bundle: Render::key_bundle,
    deleted_bundle: Render::deleted_key_bundle,
    deleted_item: Render::deleted_key_item,
};

pub(crate) async fn route(
    ctx: &VaultCtx<'_>,
    method: &Method,
    segs: &[&str],
    body: BodyIn,
) -> Result<Response, ApiError> {
    match (method, segs) {
        (&Method::GET, ["keys"] | ["keys", ""]) => lifecycle::list(ctx, &KEYS),
        (&Method::POST, ["keys", "restore"]) => restore(ctx, body).await,
        (&Method::POST, ["keys", name, "create"]) => create(ctx, name, body).await,
        (&Method::PUT, ["keys", name] | ["keys", name, ""]) => import(ctx, name, body).await,
        (&Method::DELETE, ["keys", name] | ["keys", name, ""]) => {
            lifecycle::delete(ctx, &KEYS, name).await
        }
        (&Method::GET, ["keys", name, "versions"]) => lifecycle::versions(ctx, &KEYS, name),
        (&Method::POST, ["keys", name, "backup"]) => lifecycle::backup(ctx, &KEYS, name),
        (&Method::POST, ["keys", name, "rotate"]) => rotate(ctx, name).await,
        (&Method::GET, ["keys", name, "rotationpolicy"]) => get_policy(ctx, name),
        (&Method::PUT, ["keys", name, "rotationpolicy"]) => set_policy(ctx, name, body).await,
        (&Method::POST, ["keys", name, op]) => operation(ctx, name, None, op, body).await,
        (&Method::POST, ["keys", name, version, op]) => {
            operation(ctx, name, Some(version), op, body).await
        }
        (&Method::GET, ["keys", name] | ["keys", name, ""]) => get(ctx, name, None),
        (&Method::GET, ["keys", name, version]) => get(ctx, name, Some(version)),
        (&Method::GET, ["keys", name, version, "attestation"]) => attestation(ctx, name, version),
        (&Method::PATCH, ["keys", name] | ["keys", name, ""]) => {
            update(ctx, name, None, body).await
        }
        (&Method::PATCH, ["keys", name, version]) => update(ctx, name, Some(version), body).await,
        (&Method::GET, ["deletedkeys"] | ["deletedkeys", ""]) => {
            lifecycle::list_deleted(ctx, &KEYS)
        }
        (&Method::GET, ["deletedkeys", name]) => lifecycle::get_deleted(ctx, &KEYS, name),
        (&Method::DELETE, ["deletedkeys", name]) => lifecycle::purge(ctx, &KEYS, name).await,
        (&Method::POST, ["deletedkeys", name, "recover"]) => {
            lifecycle::recover(ctx, &KEYS, name).await
        }
        _ => Err(ApiError::NoRoute),
    }
}

/// `POST /rng`.
pub(crate) async fn rng(
    ctx: &VaultCtx<'_>,
    method: &Method,
    body: BodyIn,
) -> Result<Response, ApiError> {
    if method != Method::POST {
        return Err(ApiError::NoRoute);
    }
    let params = parse_json::<RandomBytesRequest>(&read_body(body).await?)?;
    let bytes = ctx
        .node()
        .random_bytes(&ctx.caller, &ctx.vault, params.count)?;
    ok(json!({ "value": b64(&bytes) }))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadParameter(message.into())
}

/// Overwrites a request body that held key material once it has been parsed.
fn wipe(body: bytes::Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        zeroize::Zeroize::zeroize(&mut owned[..]);
    }
}

fn key_ops(raw: Option<Vec<String>>) -> Result<Option<Vec<KeyOp>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let mut ops = Vec::with_capacity(raw.len());
    for op in &raw {
        let parsed = KeyOp::parse(op)
            .ok_or_else(|| bad(format!("Invalid key operation: '{}'.", sanitize(op))))?;
        if !ops.contains(&parsed) {
            ops.push(parsed);
        }
    }
    Ok(Some(ops))
}

fn kty(raw: &str) -> Result<(KeyType, bool), ApiError> {
    KeyType::parse(raw).ok_or_else(|| {
        bad(format!(
            "Invalid kty '{}': use RSA, RSA-HSM, EC, EC-HSM, oct or oct-HSM.",
            sanitize(raw)
        ))
    })
}

fn curve(raw: &str) -> Result<Curve, ApiError> {
    Curve::parse(raw).ok_or_else(|| {
        bad(format!(
            "Invalid crv '{}': use P-256, P-384, P-521 or P-256K.",
            sanitize(raw)
        ))
    })
}

fn release_policy(raw: Option<ReleasePolicyIn>) -> Result<Option<ReleasePolicy>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let data = match &raw.data {
        Some(text) => decode_base64url(text)?,
        None => Vec::new(),
    };
    Ok(Some(ReleasePolicy {
        content_type: raw.content_type,
        immutable: raw.immutable.unwrap_or(false),
        data,
    }))
}

fn props(
    attributes: Option<KeyAttributesIn>,
    ops: Option<Vec<String>>,
    tags: Option<std::collections::BTreeMap<String, String>>,
    policy: Option<ReleasePolicyIn>,
) -> Result<KeyProps, ApiError> {
    let attributes = attributes.unwrap_or_default();
    Ok(KeyProps {
        key_ops: key_ops(ops)?,
        enabled: attributes.enabled,
        not_before: attributes.nbf,
        expires: attributes.exp,
        exportable: attributes.exportable,
        tags: tags.unwrap_or_default(),
        release_policy: release_policy(policy)?,
    })
}

async fn create(ctx: &VaultCtx<'_>, name: &str, body: BodyIn) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let params = parse_json::<KeyCreateParameters>(&read_body(body).await?)?;
    let (kty, hsm) = kty(&params.kty)?;
    let spec = KeySpec {
        kty,
        hsm,
        key_size: params.key_size,
        public_exponent: params.public_exponent,
        curve: params.crv.as_deref().map(curve).transpose()?,
    };
    let props = props(
        params.attributes,
        params.key_ops,
        params.tags,
        params.release_policy,
    )?;
    let state = ctx
        .node()
        .create_key(&ctx.caller, &ctx.vault, &name, spec, props)
        .await?;
    ok(render(ctx).key_bundle(&state))
}

fn field(value: &Option<String>, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    value
        .as_deref()
        .map(|text| {
            decode_base64url(text).map_err(|_| {
                bad(format!(
                    "The JSON Web Key field '{name}' is not valid base64url."
                ))
            })
        })
        .transpose()
}

fn secret_field(
    value: &Option<String>,
    name: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
    Ok(field(value, name)?.map(Zeroizing::new))
}

fn imported_jwk(jwk: &JwkIn) -> Result<ImportedJwk, ApiError> {
    let kty = match &jwk.kty {
        Some(raw) => Some(kty(raw)?),
        None => None,
    };
    Ok(ImportedJwk {
        kty,
        crv: jwk.crv.as_deref().map(curve).transpose()?,
        n: field(&jwk.n, "n")?,
        e: field(&jwk.e, "e")?,
        x: field(&jwk.x, "x")?,
        y: field(&jwk.y, "y")?,
        d: secret_field(&jwk.d, "d")?,
        p: secret_field(&jwk.p, "p")?,
        q: secret_field(&jwk.q, "q")?,
        dp: secret_field(&jwk.dp, "dp")?,
        dq: secret_field(&jwk.dq, "dq")?,
        qi: secret_field(&jwk.qi, "qi")?,
        k: secret_field(&jwk.k, "k")?,
        key_ops: key_ops(jwk.key_ops.clone())?,
    })
}

async fn import(ctx: &VaultCtx<'_>, name: &str, body: BodyIn) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let bytes = read_body(body).await?;
    let parsed = parse_json::<KeyImportParameters>(&bytes);
    wipe(bytes);
    let params = parsed?;
    if params.key.key_hsm.is_some() {
        return Err(bad(
            "BYOK import (key_hsm) needs a hardware security module; Keystead imports plain JSON Web Keys only.",
        ));
    }
    let jwk = imported_jwk(&params.key)?;
    let props = props(params.attributes, None, params.tags, params.release_policy)?;
    let state = ctx
        .node()
        .import_key(
            &ctx.caller,
            &ctx.vault,
            &name,
            jwk,
            params.hsm.unwrap_or(false),
            props,
        )
        .await?;
    ok(render(ctx).key_bundle(&state))
}

fn get(ctx: &VaultCtx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .get_key(&ctx.caller, &ctx.vault, &name, version)?;
    ok(render(ctx).key_bundle(&state))
}

async fn update(
    ctx: &VaultCtx<'_>,
    name: &str,
    version: Option<&str>,
    body: BodyIn,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let params = parse_json::<KeyUpdateParameters>(&read_body(body).await?)?;
    let attributes = params.attributes.unwrap_or_default();
    if attributes.exportable.is_some() {
        return Err(bad("exportable cannot be changed after a key is created."));
    }
    let patch = AttributesPatch {
        enabled: attributes.enabled,
        not_before: attributes.nbf,
        expires: attributes.exp,
        content_type: None,
        tags: params.tags,
    };
    let state = ctx
        .node()
        .update_key(
            &ctx.caller,
            &ctx.vault,
            &name,
            version,
            patch,
            key_ops(params.key_ops)?,
            release_policy(params.release_policy)?,
        )
        .await?;
    ok(render(ctx).key_bundle(&state))
}

async fn restore(ctx: &VaultCtx<'_>, body: BodyIn) -> Result<Response, ApiError> {
    let bytes = read_body_limited(body, MAX_RESTORE_BODY_BYTES).await?;
    let params = parse_json::<BlobParameters>(&bytes)?;
    let blob = decode_base64url(&params.value)?;
    let state = ctx
        .node()
        .restore_object(&ctx.caller, &ctx.vault, KIND, &blob)
        .await?;
    ok(render(ctx).key_bundle(&state))
}

async fn rotate(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .rotate_key(&ctx.caller, &ctx.vault, &name)
        .await?;
    ok(render(ctx).key_bundle(&state))
}

fn get_policy(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let (state, policy) = ctx
        .node()
        .get_rotation_policy(&ctx.caller, &ctx.vault, &name)?;
    ok(render(ctx).rotation_policy(state.object.name.as_str(), policy.as_ref()))
}

async fn set_policy(ctx: &VaultCtx<'_>, name: &str, body: BodyIn) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let params = parse_json::<RotationPolicyIn>(&read_body(body).await?)?;
    let mut actions = Vec::new();
    for raw in params.lifetime_actions.unwrap_or_default() {
        let action = raw
            .action
            .as_ref()
            .and_then(|a| RotationAction::parse(&a.kind))
            .ok_or_else(|| bad("Each lifetime action needs an action type of Rotate or Notify."))?;
        let trigger = match raw.trigger {
            Some(t) => match (t.time_after_create, t.time_before_expiry) {
                (Some(d), None) => RotationTrigger::AfterCreate(d),
                (None, Some(d)) => RotationTrigger::BeforeExpiry(d),
                _ => {
                    return Err(bad(
                        "Each lifetime action trigger needs exactly one of timeAfterCreate and timeBeforeExpiry.",
                    ))
                }
            },
            None => return Err(bad("Each lifetime action needs a trigger.")),
        };
        actions.push(LifetimeAction { action, trigger });
    }
    let expiry = params.attributes.unwrap_or_default().expiry_time;
    let (state, policy) = ctx
        .node()
        .set_rotation_policy(&ctx.caller, &ctx.vault, &name, actions, expiry)
        .await?;
    ok(render(ctx).rotation_policy(state.object.name.as_str(), Some(&policy)))
}

fn parse_operation(op: &str) -> Option<KeyOperation> {
    Some(match op.to_ascii_lowercase().as_str() {
        "encrypt" => KeyOperation::Encrypt,
        "decrypt" => KeyOperation::Decrypt,
        "wrapkey" => KeyOperation::WrapKey,
        "unwrapkey" => KeyOperation::UnwrapKey,
        "sign" => KeyOperation::Sign,
        "verify" => KeyOperation::Verify,
        _ => return None,
    })
}

fn optional(value: &Option<String>) -> Result<Option<Vec<u8>>, ApiError> {
    value.as_deref().map(decode_base64url).transpose()
}

/// `GET /keys/{name}/{version}/attestation` (7.6+): Managed HSM keys only. The key is looked
/// up first, so a missing key or a caller without access is told so; an existing one gets a
/// clear refusal rather than a 404 that reads like a missing key.
fn attestation(ctx: &VaultCtx<'_>, name: &str, version: &str) -> Result<Response, ApiError> {
    get(ctx, name, Some(version))?;
    Err(bad(
        "Key attestation is available only for keys in a Managed HSM; Keystead keys are software-protected.",
    ))
}

async fn operation(
    ctx: &VaultCtx<'_>,
    name: &str,
    version: Option<&str>,
    op: &str,
    body: BodyIn,
) -> Result<Response, ApiError> {
    let Some(operation) = parse_operation(op) else {
        if op.eq_ignore_ascii_case("release") {
            return Err(bad(
                "Key release needs an attestation service; Keystead does not offer it.",
            ));
        }
        if op.eq_ignore_ascii_case("securewrapkey") || op.eq_ignore_ascii_case("secureunwrapkey") {
            return Err(bad(
                "Secure key wrap needs a trusted execution environment; Keystead does not offer it.",
            ));
        }
        return Err(ApiError::NoRoute);
    };
    let name = object_name(name)?;
    let version = version.filter(|v| !v.is_empty());
    let bytes = read_body(body).await?;
    let parsed = parse_json::<KeyOperationParameters>(&bytes);
    wipe(bytes);
    let params = parsed?;
    let input = OperationInput {
        alg: params.alg.clone(),
        value: Zeroizing::new(decode_base64url(&params.value)?),
        iv: optional(&params.iv)?,
        aad: optional(&params.aad)?,
        tag: optional(&params.tag)?,
        digest: optional(&params.digest)?,
    };
    let output = ctx
        .node()
        .key_operation(&ctx.caller, &ctx.vault, &name, version, operation, input)
        .await?;
    if let Some(verified) = output.result.verified {
        return ok(json!({ "value": verified }));
    }
    let r = render(ctx);
    let mut out = Map::new();
    out.insert(
        "kid".into(),
        json!(r.object_id(
            KIND,
            output.state.object.name.as_str(),
            Some(&output.state.version.version)
        )),
    );
    if let Some(value) = &output.result.value {
        out.insert("value".into(), json!(b64(value)));
    }
    for (field, value) in [
        ("iv", &output.result.iv),
        ("tag", &output.result.tag),
        ("aad", &output.result.aad),
    ] {
        if let Some(value) = value {
            out.insert(field.into(), json!(b64(value)));
        }
    }
    ok(Value::Object(out))
}
