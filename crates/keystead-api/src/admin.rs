//! The admin API used by `keystead vault|principal|role ...`: manages vaults, service
//! principals and role assignments. Authenticated with the deployment's admin token.
//!
//! Routes (JSON in and out):
//! `GET|POST /admin/vaults`, `DELETE /admin/vaults/{name}`,
//! `POST /admin/vaults/{name}/purge-protection`,
//! `GET|POST /admin/principals`, `DELETE /admin/principals/{client_id}`,
//! `GET|POST /admin/roles`, `DELETE /admin/roles/{id}`,
//! `GET /admin/cluster`, `POST /admin/cluster/nodes`, `DELETE /admin/cluster/nodes/{id}`,
//! `GET /admin/region` (status), `POST /admin/region` (a `RegionRequest`: switchover,
//! failover, divergence list|show|apply|discard).

use crate::auth::authenticate_admin;
use crate::error::ApiError;
use crate::request::{parse_json, read_body, segments, Query};
use crate::router::AppState;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keystead_core::cluster::JoinRequest;
use keystead_core::region::RegionRequest;
use keystead_model::{Principal, RoleAssignment, VaultName, VaultSettings};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct CreateVault {
    name: String,
    retention_days: Option<u32>,
    #[serde(default)]
    purge_protection: bool,
}

#[derive(Deserialize)]
struct CreatePrincipal {
    name: String,
}

#[derive(Deserialize)]
struct AssignRole {
    principal: String,
    role: String,
    vault: String,
    scope: Option<String>,
}

fn vault_json(v: &VaultSettings) -> Value {
    json!({
        "name": v.name.as_str(),
        "retention_days": v.retention_days,
        "purge_protection": v.purge_protection,
        "recovery_level": v.recovery_level().as_str(),
        "created": v.created,
    })
}

fn principal_json(p: &Principal) -> Value {
    json!({"client_id": p.client_id, "name": p.display_name, "created": p.created})
}

fn role_json(r: &RoleAssignment) -> Value {
    json!({
        "id": r.id,
        "principal": r.principal_id,
        "role": r.role.display_name(),
        "vault": r.scope.vault.as_str(),
        "scope": r.scope.relative(),
        "created": r.created,
    })
}

fn vault_name(raw: &str) -> Result<VaultName, ApiError> {
    VaultName::parse(raw).ok_or_else(|| ApiError::BadParameter("invalid vault name".into()))
}

pub(crate) async fn route(state: &AppState, req: Request) -> Result<Response, ApiError> {
    authenticate_admin(state, req.headers()).await?;
    let node = &state.node;
    let segs = segments(req.uri().path());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let created = |v: Value| Ok((StatusCode::CREATED, Json(v)).into_response());
    let ok = |v: Value| Ok(Json(v).into_response());
    match (method, &segs[1..]) {
        (Method::GET, ["vaults"]) => ok(Value::Array(
            node.vaults()?.iter().map(vault_json).collect(),
        )),
        (Method::POST, ["vaults"]) => {
            let body: CreateVault = parse_json(&read_body(req.into_body()).await?)?;
            let v = node
                .create_vault(&body.name, body.retention_days, body.purge_protection)
                .await?;
            created(vault_json(&v))
        }
        (Method::DELETE, ["vaults", name]) => {
            node.delete_vault(&vault_name(name)?).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["vaults", name, "purge-protection"]) => ok(vault_json(
            &node.enable_purge_protection(&vault_name(name)?).await?,
        )),
        (Method::GET, ["principals"]) => ok(Value::Array(
            node.principals()?.iter().map(principal_json).collect(),
        )),
        (Method::POST, ["principals"]) => {
            let body: CreatePrincipal = parse_json(&read_body(req.into_body()).await?)?;
            let new = node.create_principal(&body.name).await?;
            let mut out = principal_json(&new.principal);
            out["client_secret"] = json!(new.client_secret.as_str());
            out["tenant_id"] = json!(node.tenant_id());
            created(out)
        }
        (Method::DELETE, ["principals", id]) => {
            node.delete_principal(id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::GET, ["roles"]) => {
            let vault = query.get("vault").map(str::to_ascii_lowercase);
            let roles = node
                .role_assignments()?
                .iter()
                .filter(|r| vault.as_deref().is_none_or(|v| r.scope.vault.as_str() == v))
                .map(role_json)
                .collect();
            ok(Value::Array(roles))
        }
        (Method::POST, ["roles"]) => {
            let body: AssignRole = parse_json(&read_body(req.into_body()).await?)?;
            let r = node
                .assign_role(
                    &body.principal,
                    &body.role,
                    &body.vault,
                    body.scope.as_deref(),
                )
                .await?;
            created(role_json(&r))
        }
        (Method::DELETE, ["roles", id]) => {
            node.remove_role(id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (method, ["region", rest @ ..]) => {
            let Some(region) = &state.region else {
                return Err(ApiError::BadParameter(
                    "this node is not part of a multi-region deployment".into(),
                ));
            };
            match (method, rest) {
                (Method::GET, []) => ok(region.admin(RegionRequest::Status).await?),
                (Method::POST, []) => {
                    let request: RegionRequest = parse_json(&read_body(req.into_body()).await?)?;
                    ok(region.admin(request).await?)
                }
                _ => Err(ApiError::NoRoute),
            }
        }
        (method, ["cluster", rest @ ..]) => {
            let Some(cluster) = &state.cluster else {
                return Err(ApiError::BadParameter(
                    "this node runs in single-node mode; there is no cluster to manage".into(),
                ));
            };
            match (method, rest) {
                (Method::GET, []) => ok(cluster.status().await?),
                (Method::POST, ["nodes"]) => {
                    let request: JoinRequest = parse_json(&read_body(req.into_body()).await?)?;
                    ok(cluster.join(request).await?)
                }
                (Method::DELETE, ["nodes", id]) => {
                    let id = id
                        .parse()
                        .map_err(|_| ApiError::BadParameter("node ids are integers".into()))?;
                    ok(cluster.remove(id).await?)
                }
                _ => Err(ApiError::NoRoute),
            }
        }
        _ => Err(ApiError::NoRoute),
    }
}
