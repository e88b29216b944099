//! The secrets routes of the Key Vault data plane (akv-api.md §3, "Secrets").

use crate::error::ApiError;
use crate::lifecycle::{self, KindWire};
use crate::request::{parse_json, read_body, read_body_limited, sanitize, MAX_RESTORE_BODY_BYTES};
use crate::router::{BodyIn, VaultCtx};
use crate::wire::{BlobParameters, Render, SecretSetParameters, UpdateParameters};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use keystead_core::secrets::NewSecret;
use keystead_model::{ObjectKind, ObjectName};
use zeroize::Zeroizing;

const KIND: ObjectKind = ObjectKind::Secret;

/// How secrets render in the shared lifecycle routes.
const SECRETS: KindWire = KindWire {
    kind: KIND,
    item: Render::secret_item,
    bundle: |r, s| r.secret_bundle(s, None),
    deleted_bundle: Render::deleted_secret_bundle,
    deleted_item: Render::deleted_secret_item,
};

pub(crate) async fn route(
    ctx: &VaultCtx<'_>,
    method: &Method,
    segs: &[&str],
    body: BodyIn,
) -> Result<Response, ApiError> {
    match (method, segs) {
        (&Method::GET, ["secrets"] | ["secrets", ""]) => lifecycle::list(ctx, &SECRETS),
        (&Method::POST, ["secrets", "restore"]) => restore(ctx, body).await,
        (&Method::PUT, ["secrets", name] | ["secrets", name, ""]) => set(ctx, name, body).await,
        (&Method::DELETE, ["secrets", name] | ["secrets", name, ""]) => {
            lifecycle::delete(ctx, &SECRETS, name).await
        }
        (&Method::GET, ["secrets", name, "versions"]) => lifecycle::versions(ctx, &SECRETS, name),
        (&Method::POST, ["secrets", name, "backup"]) => lifecycle::backup(ctx, &SECRETS, name),
        (&Method::GET, ["secrets", name] | ["secrets", name, ""]) => get(ctx, name, None),
        (&Method::GET, ["secrets", name, version]) => get(ctx, name, Some(version)),
        (&Method::PATCH, ["secrets", name] | ["secrets", name, ""]) => {
            update(ctx, name, None, body).await
        }
        (&Method::PATCH, ["secrets", name, version]) => {
            update(ctx, name, Some(version), body).await
        }
        (&Method::GET, ["deletedsecrets"] | ["deletedsecrets", ""]) => {
            lifecycle::list_deleted(ctx, &SECRETS)
        }
        (&Method::GET, ["deletedsecrets", name]) => lifecycle::get_deleted(ctx, &SECRETS, name),
        (&Method::DELETE, ["deletedsecrets", name]) => lifecycle::purge(ctx, &SECRETS, name).await,
        (&Method::POST, ["deletedsecrets", name, "recover"]) => {
            lifecycle::recover(ctx, &SECRETS, name).await
        }
        _ => Err(ApiError::NoRoute),
    }
}

pub(crate) fn object_name(raw: &str) -> Result<ObjectName, ApiError> {
    ObjectName::parse(raw).ok_or_else(|| {
        ApiError::BadParameter(format!(
            "The request URI contains an invalid name: {}. Names are 1-127 characters of letters, digits and '-'.",
            sanitize(raw)
        ))
    })
}

pub(crate) fn render(ctx: &VaultCtx<'_>) -> Render {
    Render {
        base: ctx.host.base_url(),
    }
}

pub(crate) fn ok(value: serde_json::Value) -> Result<Response, ApiError> {
    Ok(Json(value).into_response())
}

/// Overwrites a request body that held a secret once it has been parsed.
fn wipe(body: bytes::Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        zeroize::Zeroize::zeroize(&mut owned[..]);
    }
}

async fn set(ctx: &VaultCtx<'_>, name: &str, body: BodyIn) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let bytes = read_body(body).await?;
    let parsed = parse_json::<SecretSetParameters>(&bytes);
    wipe(bytes);
    let params = parsed?;
    let attributes = params.attributes.unwrap_or_default();
    let secret = NewSecret {
        value: Zeroizing::new(params.value),
        content_type: params.content_type,
        enabled: attributes.enabled,
        not_before: attributes.nbf,
        expires: attributes.exp,
        tags: params.tags.unwrap_or_default(),
    };
    let stored = ctx
        .node()
        .set_secret(&ctx.caller, &ctx.vault, &name, secret)
        .await?;
    ok(render(ctx).secret_bundle(&stored.state, Some(&stored.value)))
}

fn get(ctx: &VaultCtx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let secret = ctx
        .node()
        .get_secret(&ctx.caller, &ctx.vault, &name, version)?;
    ok(render(ctx).secret_bundle(&secret.state, Some(&secret.value)))
}

async fn update(
    ctx: &VaultCtx<'_>,
    name: &str,
    version: Option<&str>,
    body: BodyIn,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let params = parse_json::<UpdateParameters>(&read_body(body).await?)?;
    let state = ctx
        .node()
        .update_version(
            &ctx.caller,
            &ctx.vault,
            KIND,
            &name,
            version,
            params.into_patch(),
        )
        .await?;
    ok(render(ctx).secret_bundle(&state, None))
}

async fn restore(ctx: &VaultCtx<'_>, body: BodyIn) -> Result<Response, ApiError> {
    let bytes = read_body_limited(body, MAX_RESTORE_BODY_BYTES).await?;
    let params = parse_json::<BlobParameters>(&bytes)?;
    let blob = decode_base64url(&params.value)?;
    let restored = ctx
        .node()
        .restore_object(&ctx.caller, &ctx.vault, KIND, &blob)
        .await?;
    ok(render(ctx).secret_bundle(&restored, None))
}

/// base64url with or without padding (standard base64 accepted too).
pub(crate) fn decode_base64url(text: &str) -> Result<Vec<u8>, ApiError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD.decode(text.trim()))
        .map_err(|_| ApiError::BadParameter("The value is not valid base64url.".into()))
}
