//! The routes every object kind shares — list, versions, delete, the deleted views, recover,
//! purge, backup — written once and parameterised by the kind's JSON renderings.

use crate::error::ApiError;
use crate::router::VaultCtx;
use crate::secrets::{object_name, ok, render};
use crate::wire::{list_result, Render};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use keystead_core::objects::ObjectState;
use keystead_model::ObjectKind;
use serde_json::{json, Value};

/// How one kind renders its bundles and list items.
pub(crate) struct KindWire {
    pub kind: ObjectKind,
    /// A list item; `true` = versioned id (version lists), `false` = base id.
    pub item: fn(&Render, &ObjectState, bool) -> Value,
    /// The bundle returned by recover (never with secret material).
    pub bundle: fn(&Render, &ObjectState) -> Value,
    pub deleted_bundle: fn(&Render, &ObjectState) -> Value,
    pub deleted_item: fn(&Render, &ObjectState) -> Value,
}

pub(crate) fn list(ctx: &VaultCtx<'_>, wire: &KindWire) -> Result<Response, ApiError> {
    list_page(ctx, wire, false)
}

pub(crate) fn list_deleted(ctx: &VaultCtx<'_>, wire: &KindWire) -> Result<Response, ApiError> {
    list_page(ctx, wire, true)
}

/// One page of the active or the soft-deleted objects of a kind.
fn list_page(ctx: &VaultCtx<'_>, wire: &KindWire, deleted: bool) -> Result<Response, ApiError> {
    let max = ctx.query.max_results()?;
    let page = ctx.node().list_objects(
        &ctx.caller,
        &ctx.vault,
        wire.kind,
        deleted,
        ctx.query.skip_token(),
        max,
    )?;
    let r = render(ctx);
    let items = page
        .items
        .iter()
        .map(|s| match deleted {
            true => (wire.deleted_item)(&r, s),
            false => (wire.item)(&r, s, false),
        })
        .collect();
    let collection = match deleted {
        true => wire.kind.deleted_collection(),
        false => wire.kind.collection(),
    };
    ok(list_result(
        items,
        ctx.next_link(&format!("/{collection}"), page.next, max),
    ))
}

pub(crate) fn versions(
    ctx: &VaultCtx<'_>,
    wire: &KindWire,
    name: &str,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let max = ctx.query.max_results()?;
    let (vault, object, page) = ctx.node().list_versions(
        &ctx.caller,
        &ctx.vault,
        wire.kind,
        &name,
        ctx.query.skip_token(),
        max,
    )?;
    let r = render(ctx);
    let items = page
        .items
        .into_iter()
        .map(|version| {
            let state = ObjectState {
                vault: vault.clone(),
                object: object.clone(),
                version,
            };
            (wire.item)(&r, &state, true)
        })
        .collect();
    let path = format!("/{}/{}/versions", wire.kind.collection(), object.name);
    ok(list_result(items, ctx.next_link(&path, page.next, max)))
}

pub(crate) async fn delete(
    ctx: &VaultCtx<'_>,
    wire: &KindWire,
    name: &str,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .delete_object(&ctx.caller, &ctx.vault, wire.kind, &name)
        .await?;
    ok((wire.deleted_bundle)(&render(ctx), &state))
}

pub(crate) fn get_deleted(
    ctx: &VaultCtx<'_>,
    wire: &KindWire,
    name: &str,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .get_deleted(&ctx.caller, &ctx.vault, wire.kind, &name)?;
    ok((wire.deleted_bundle)(&render(ctx), &state))
}

pub(crate) async fn recover(
    ctx: &VaultCtx<'_>,
    wire: &KindWire,
    name: &str,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let state = ctx
        .node()
        .recover_object(&ctx.caller, &ctx.vault, wire.kind, &name)
        .await?;
    ok((wire.bundle)(&render(ctx), &state))
}

pub(crate) async fn purge(
    ctx: &VaultCtx<'_>,
    wire: &KindWire,
    name: &str,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    ctx.node()
        .purge_object(&ctx.caller, &ctx.vault, wire.kind, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"value": "<base64url sealed blob>"}`.
pub(crate) fn backup(
    ctx: &VaultCtx<'_>,
    wire: &KindWire,
    name: &str,
) -> Result<Response, ApiError> {
    let name = object_name(name)?;
    let blob = ctx
        .node()
        .backup_object(&ctx.caller, &ctx.vault, wire.kind, &name)?;
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob);
    ok(json!({ "value": value }))
}
