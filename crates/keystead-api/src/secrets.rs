//! The secrets routes of the Key Vault data plane (akv-api.md §3, "Secrets").

use crate::error::ApiError;
use crate::request::{parse_json, read_body, read_body_limited, sanitize, MAX_RESTORE_BODY_BYTES};
use crate::router::{BodyIn, VaultCtx};
use crate::wire::{list_result, BlobParameters, Render, SecretSetParameters, UpdateParameters};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use keystead_core::secrets::NewSecret;
use keystead_model::{ObjectKind, ObjectName};
use serde_json::json;
use zeroize::Zeroizing;

const KIND: ObjectKind = ObjectKind::Secret;

pub(crate) async fn route(
    ctx: &VaultCtx<'_>,
    method: &Method,
    segs: &[&str],
    body: BodyIn,
) -> Result<Response, ApiError> {
    match (method, segs) {
        (&Method::GET, ["secrets"] | ["secrets", ""]) => list(ctx),
        (&Method::POST, ["secrets", "restore"]) => restore(ctx, body).await,
        (&Method::PUT, ["secrets", name] | ["secrets", name, ""]) => set(ctx, name, body).await,
        (&Method::DELETE, ["secrets", name] | ["secrets", name, ""]) => delete(ctx, name).await,
        (&Method::GET, ["secrets", name, "versions"]) => versions(ctx, name),
        (&Method::POST, ["secrets", name, "backup"]) => backup(ctx, name),
        (&Method::GET, ["secrets", name] | ["secrets", name, ""]) => get(ctx, name, None),
        (&Method::GET, ["secrets", name, version]) => get(ctx, name, Some(version)),
        (&Method::PATCH, ["secrets", name] | ["secrets", name, ""]) => {
            update(ctx, name, None, body).await
        }
        (&Method::PATCH, ["secrets", name, version]) => {
            update(ctx, name, Some(version), body).await
        }
        (&Method::GET, ["deletedsecrets"] | ["deletedsecrets", ""]) => list_deleted(ctx),
        (&Method::GET, ["deletedsecrets", name]) => get_deleted(ctx, name),
        (&Method::DELETE, ["deletedsecrets", name]) => purge(ctx, name).await,
        (&Method::POST, ["deletedsecrets", name, "recover"]) => recover(ctx, name).await,
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

fn list(ctx: &VaultCtx<'_>) -> Result<Response, ApiError> {
    let max = ctx.query.max_results()?;
    let page = ctx.node().list_objects(
        &ctx.caller,
        &ctx.vault,
        KIND,
        false,
        ctx.query.skip_token(),
        max,
    )?;
    let r = render(ctx);
    let items = page.items.iter().map(|s| r.secret_item(s, false)).collect();
    ok(list_result(
        items,
        ctx.next_link("/secrets", page.next, max),
    ))
}

fn versions(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let max = ctx.query.max_results()?;
    let (vault, object, page) = ctx.node().list_versions(
        &ctx.caller,
        &ctx.vault,
        KIND,
        &name,
        ctx.query.skip_token(),
        max,
    )?;
    let r = render(ctx);
    let items = page
        .items
        .into_iter()
        .map(|version| {
            let state = keystead_core::objects::ObjectState {
                vault: vault.clone(),
                object: object.clone(),
                version,
            };
            r.secret_item(&state, true)
        })
        .collect();
    let path = format!("/secrets/{}/versions", object.name);
    ok(list_result(items, ctx.next_link(&path, page.next, max)))
}

async fn delete(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .delete_object(&ctx.caller, &ctx.vault, KIND, &name)
        .await?;
    ok(render(ctx).deleted_secret_bundle(&state))
}

fn list_deleted(ctx: &VaultCtx<'_>) -> Result<Response, ApiError> {
    let max = ctx.query.max_results()?;
    let page = ctx.node().list_objects(
        &ctx.caller,
        &ctx.vault,
        KIND,
        true,
        ctx.query.skip_token(),
        max,
    )?;
    let r = render(ctx);
    let items = page
        .items
        .iter()
        .map(|s| r.deleted_secret_item(s))
        .collect();
    ok(list_result(
        items,
        ctx.next_link("/deletedsecrets", page.next, max),
    ))
}

fn get_deleted(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .get_deleted(&ctx.caller, &ctx.vault, KIND, &name)?;
    ok(render(ctx).deleted_secret_bundle(&state))
}

async fn recover(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .recover_object(&ctx.caller, &ctx.vault, KIND, &name)
        .await?;
    ok(render(ctx).secret_bundle(&state, None))
}

async fn purge(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    ctx.node()
        .purge_object(&ctx.caller, &ctx.vault, KIND, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn backup(ctx: &VaultCtx<'_>, name: &str) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let blob = ctx
        .node()
        .backup_object(&ctx.caller, &ctx.vault, KIND, &name)?;
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob);
    ok(json!({ "value": value }))
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
