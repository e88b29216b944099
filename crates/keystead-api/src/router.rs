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
    /// Key Vault's per-vault service limits (429 + `Retry-After`), when configured.
    pub throttle: Option<Arc<crate::throttle::Throttle>>,
    /// Membership administration, when this node is part of a cluster.
    pub cluster: Option<Arc<dyn keystead_core::cluster::ClusterAdmin>>,
    /// Region roles and replication, when this node belongs to a multi-region deployment.
    pub region: Option<Arc<dyn keystead_core::region::RegionControl>>,
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
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let limit = if seg_refs.last() == Some(&"restore") {
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
    // Counted only once authenticated: anonymous requests (the SDKs' challenge round) cost a
    // vault nothing.
    if let Some(throttle) = &state.throttle {
        throttle.admit(&vault, &parts.method, &seg_refs)?;
    }
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
    let region = state.region.as_ref().and_then(|r| r.view());
    if let Some(view) = &region {
        check_region_access(view, &method, &segs)?;
    }
    let ctx = VaultCtx {
        state,
        host,
        vault,
        caller,
        query,
        api_version,
    };
    let segs = seg_refs;
    // Commands proposed while handling this request are attributed to the caller.
    let caller = ctx.caller.client_id.clone();
    let routed = keystead_core::origin::scope(caller, async {
        match segs.first().copied() {
            Some("secrets") | Some("deletedsecrets") => {
                secrets::route(&ctx, &method, &segs, body).await
            }
            Some("keys") | Some("deletedkeys") => keys::route(&ctx, &method, &segs, body).await,
            Some("rng") if segs.len() == 1 => keys::rng(&ctx, &method, body).await,
            _ => Err(ApiError::NoRoute),
        }
    });
    let mut response = routed.await?;
    if let Some(view) = &region {
        add_region_headers(&mut response, view);
    }
    if stale {
        response.headers_mut().insert(
            HeaderName::from_static("x-keystead-stale-read"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// On a secondary whose primary is out of reach, refuses at once what only the primary can
/// do (see `read_only`): no key is generated, nothing is sealed, for a write that cannot land.
fn check_region_access(
    view: &keystead_core::region::RegionView,
    method: &Method,
    segs: &[String],
) -> Result<(), ApiError> {
    if view.role == keystead_model::RegionRole::Primary || view.primary_reachable {
        return Ok(());
    }
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match crate::read_only::classify(method, &segs) {
        crate::read_only::Access::ReadOnlySet => Ok(()),
        _ => Err(keystead_core::CoreError::ReadOnly {
            region: view.region.clone(),
            detail: format!(
                "it is a secondary (epoch {}) and its primary region {} is unreachable; \
                 only the read-only operation set is served until the primary returns or \
                 this region is promoted ({})",
                view.epoch, view.primary, view.failover_state
            ),
        }
        .into()),
    }
}

/// Which region answered and, on a secondary, how far behind the primary its state is.
fn add_region_headers(response: &mut Response, view: &keystead_core::region::RegionView) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&view.region) {
        headers.insert(HeaderName::from_static("x-keystead-region"), v);
    }
    headers.insert(
        HeaderName::from_static("x-keystead-region-role"),
        HeaderValue::from_static(view.role.as_str()),
    );
    if view.role == keystead_model::RegionRole::Secondary {
        if let Ok(v) = HeaderValue::from_str(&view.lag_entries.to_string()) {
            headers.insert(
                HeaderName::from_static("x-keystead-replication-lag-entries"),
                v,
            );
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", view.lag_seconds)) {
            headers.insert(
                HeaderName::from_static("x-keystead-replication-lag-seconds"),
                v,
            );
        }
    }
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
        (Method::GET, ["metrics"]) => Ok(metrics(state)),
        (_, ["admin", ..]) => admin::route(state, req).await,
        _ => authority::route(state, host, req).await,
    }
}

/// Prometheus text: region role, epoch and replication lag (what an operator alerts on), and
/// requests refused by throttling.
fn metrics(state: &AppState) -> Response {
    let mut out = String::new();
    if let Some(throttle) = &state.throttle {
        out.push_str("# TYPE keystead_throttled_requests_total counter\n");
        for (vault, class, refused) in throttle.refusals() {
            out.push_str(&format!(
                "keystead_throttled_requests_total{{vault=\"{vault}\",class=\"{class}\"}} {refused}\n"
            ));
        }
    }
    if let Some(view) = state.region.as_ref().and_then(|r| r.view()) {
        let labels = format!("region=\"{}\"", view.region);
        let primary = u8::from(view.role == keystead_model::RegionRole::Primary);
        out.push_str(&format!(
            "# TYPE keystead_region_primary gauge\nkeystead_region_primary{{{labels}}} {primary}\n\
             # TYPE keystead_region_epoch gauge\nkeystead_region_epoch{{{labels}}} {}\n\
             # TYPE keystead_replication_lag_entries gauge\nkeystead_replication_lag_entries{{{labels}}} {}\n\
             # TYPE keystead_replication_lag_seconds gauge\nkeystead_replication_lag_seconds{{{labels}}} {}\n\
             # TYPE keystead_region_primary_reachable gauge\nkeystead_region_primary_reachable{{{labels}}} {}\n",
            view.epoch,
            view.lag_entries,
            view.lag_seconds,
            u8::from(view.primary_reachable),
        ));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}

/// A vault request's body, already read in full by the router.
pub(crate) type BodyIn = bytes::Bytes;
