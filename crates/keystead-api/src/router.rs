//! Entry point of every request: stamps request ids, decides the target from the host, and
//! dispatches vault requests by method and path segments.

use crate::error::ApiError;
use crate::host::{ClientHost, Target};
use crate::request::{
    check_api_version, collect_body, segments, Query, MAX_BODY_BYTES, MAX_RESTORE_BODY_BYTES,
};
use crate::{admin, auth, authority, keys, secrets};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Router;
use keystead_core::{Caller, Node};
use keystead_model::VaultName;
use std::sync::Arc;

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Vaults are served at `<vault>.<base_domain>`; e.g. `vault.localhost`.
    pub base_domain: String,
    /// The OAuth2 authority named in challenges; default `https://localhost:<port>`.
    pub authority_url: Option<String>,
    /// When no leader is reachable, answer reads from local (possibly stale) state, marked
    /// with `x-keystead-stale-read: true`, instead of 503.
    pub allow_stale_reads: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub node: Arc<Node>,
    pub config: Arc<ApiConfig>,
    /// Membership administration, when this node is part of a cluster.
    pub cluster: Option<Arc<dyn keystead_core::cluster::ClusterAdmin>>,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();
    let mut response = match ClientHost::from_request(&req) {
        None => ApiError::BadParameter("The request has no Host header.".into()).into_response(),
        Some(host) => match host.target(&state.config.base_domain) {
            Target::Vault(vault) => vault_request(&state, &host, vault, req)
                .await
                .unwrap_or_else(IntoResponse::into_response),
            Target::Service => service_request(&state, &host, req)
                .await
                .unwrap_or_else(IntoResponse::into_response),
        },
    };
    let headers = response.headers_mut();
    let request_id = new_request_id();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static("x-ms-request-id"), v);
    }
    if let Some(v) = client_request_id {
        headers.insert(HeaderName::from_static("x-ms-client-request-id"), v);
    }
    headers.insert(
        HeaderName::from_static("x-ms-keyvault-service-version"),
        HeaderValue::from_static(concat!("keystead/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}

/// A request id: not a secret, so a counter mixed with the start time is enough.
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hex = format!("{:016x}{:016x}", (*start as u64), n);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Everything a vault operation needs about its request.
pub(crate) struct VaultCtx<'a> {
    pub state: &'a AppState,
    pub host: &'a ClientHost,
    pub vault: VaultName,
    pub caller: Caller,
    pub query: Query,
    pub api_version: String,
}

impl VaultCtx<'_> {
    pub fn node(&self) -> &Node {
        &self.state.node
    }

    /// An absolute `nextLink` on the request's own scheme, host and port.
    pub fn next_link(&self, path: &str, token: Option<String>, max: usize) -> Option<String> {
        let token = token?;
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("api-version", &self.api_version)
            .append_pair("$skiptoken", &token)
            .append_pair("maxresults", &max.to_string())
            .finish();
        Some(format!("{}{path}?{query}", self.host.base_url()))
    }
}

async fn vault_request(
    state: &AppState,
    host: &ClientHost,
    vault: VaultName,
    req: Request,
) -> Result<Response, ApiError> {
    // Read the whole body before anything can refuse the request, so every answer leaves the
    // keep-alive connection reusable (reading is not parsing). Only restore requests may carry
    // large backup blobs.
    let segs = segments(req.uri().path());
    let limit = if segs.last().map(String::as_str) == Some("restore") {
        MAX_RESTORE_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let (parts, body) = req.into_parts();
    let body = collect_body(body, limit).await;
    // Authentication comes first among the checks: an unauthenticated request gets the
    // challenge whatever its path, query or body (the SDKs' first request has neither token
    // nor body).
    let caller = auth::authenticate(state, host, &parts.headers)?;
    let body = body?;
    let query = Query::parse(parts.uri.query());
    let method = parts.method.clone();
    // Reads are linearizable: wait until this node has applied everything acknowledged before
    // the request arrived (a no-op on a single node; a read-index round in a cluster).
    let mut stale = false;
    if method == Method::GET {
        match state.node.read_barrier().await {
            Ok(()) => {}
            Err(keystead_core::CoreError::Unavailable(_)) if state.config.allow_stale_reads => {
                stale = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let api_version = check_api_version(&query)?;
    let ctx = VaultCtx {
        state,
        host,
        vault,
        caller,
        query,
        api_version,
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let mut response = match segs.first().copied() {
        Some("secrets") | Some("deletedsecrets") => {
            secrets::route(&ctx, &method, &segs, body).await
        }
        Some("keys") | Some("deletedkeys") => keys::route(&ctx, &method, &segs, body).await,
        Some("rng") if segs.len() == 1 => keys::rng(&ctx, &method, body).await,
        _ => Err(ApiError::NoRoute),
    }?;
    if stale {
        response.headers_mut().insert(
            HeaderName::from_static("x-keystead-stale-read"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

async fn service_request(
    state: &AppState,
    host: &ClientHost,
    req: Request,
) -> Result<Response, ApiError> {
    let segs = segments(req.uri().path());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (method, segs.as_slice()) {
        // Liveness: the process serves requests.
        (Method::GET, ["healthz"]) => {
            Ok(axum::Json(serde_json::json!({"status": "ok"})).into_response())
        }
        // Readiness: in a cluster, part of a working quorum and caught up.
        (Method::GET, ["readyz"]) => {
            let verdict = match &state.cluster {
                Some(cluster) => cluster.readiness(),
                None => Ok(()),
            };
            Ok(match verdict {
                Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
                Err(reason) => (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({"status": "not ready", "reason": reason})),
                )
                    .into_response(),
            })
        }
        (_, ["admin", ..]) => admin::route(state, req).await,
        _ => authority::route(state, host, req).await,
    }
}

/// A vault request's body, already read in full by the router.
pub(crate) type BodyIn = bytes::Bytes;
