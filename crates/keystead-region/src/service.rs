//! The region listener: what a node answers to other regions' nodes. Requires a client
//! certificate from the deployment CA (the same rule as the zone cluster's listener).

use crate::protocol::*;
use crate::region::{topology_of, Region};
use crate::status;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use keystead_core::region::RegionRequest;
use keystead_core::CoreError;
use keystead_model::RegionRole;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

type Shared = State<Arc<Region>>;

pub fn router(region: Arc<Region>) -> Router {
    Router::new()
        .route(STREAM, post(stream))
        .route(SNAPSHOT, post(snapshot))
        .route(PROPOSE, post(propose))
        .route(LEASE, post(lease))
        .route(STATUS, post(status_handler))
        .route(FENCE, post(fence))
        .route(DEMOTE, post(demote))
        .route(ADMIN, post(admin))
        .with_state(region)
}

/// Serves the listener until the process ends.
pub async fn serve(region: Arc<Region>, tls: &keystead_replication::PeerTls) -> Result<(), String> {
    let config = keystead_replication::peer::server_tls(tls)?;
    let listen = region.settings.listen;
    let app = router(region);
    let server = axum_server::bind_rustls(
        listen,
        axum_server::tls_rustls::RustlsConfig::from_config(config),
    );
    tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(%listen, error = %e, "region listener stopped");
        }
    });
    Ok(())
}

fn failed<T>(e: CoreError) -> Json<Result<T, String>> {
    Json(Err(e.to_string()))
}

async fn stream(
    State(region): Shared,
    Json(req): Json<StreamRequest>,
) -> Json<Result<StreamReply, String>> {
    // Long poll: a caught-up secondary learns of a new entry within one poll step instead of
    // one pull interval (the entries are applied by the region's own log; looking again is a
    // cheap read transaction).
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.wait_ms.min(MAX_WAIT_MS));
    loop {
        match stream_answer(&region, &req) {
            Ok(reply) if reply.entries.is_empty() && !reply.snapshot_needed => {
                if tokio::time::Instant::now() >= deadline {
                    return Json(Ok(reply));
                }
                tokio::time::sleep(LONG_POLL_STEP).await;
            }
            Ok(reply) => return Json(Ok(reply)),
            Err(e) => return failed(e),
        }
    }
}

/// Longest long poll a stream request may ask for.
const MAX_WAIT_MS: u64 = 5_000;
const LONG_POLL_STEP: Duration = Duration::from_millis(5);

fn stream_answer(region: &Region, req: &StreamRequest) -> Result<StreamReply, CoreError> {
    let read = region.store.read()?;
    let state = read
        .region_state()?
        .ok_or_else(|| CoreError::Unavailable("not configured".into()))?;
    let head = read.region_seq()?;
    let limit = req.limit.clamp(1, 1000);
    let (entries, _oldest) = read.region_outbox(req.from, limit)?;
    // The outbox no longer holds `from` (trimmed, or this region's own state came from a
    // snapshot): the requester needs a snapshot.
    let snapshot_needed = req.from <= head && entries.first().map(|e| e.seq) != Some(req.from);
    Ok(StreamReply {
        topology: topology_of(&state),
        head,
        snapshot_needed,
        entries: if snapshot_needed { Vec::new() } else { entries },
    })
}

async fn snapshot(State(region): Shared) -> Json<Result<SnapshotReply, String>> {
    let answer = || -> Result<SnapshotReply, CoreError> {
        let topology = region.topology()?;
        let snapshot = region.store.export_region_snapshot()?;
        Ok(SnapshotReply {
            topology,
            seq: snapshot.seq,
            epoch: snapshot.epoch,
            state: base64::engine::general_purpose::STANDARD.encode(&snapshot.state),
        })
    };
    match answer() {
        Ok(reply) => Json(Ok(reply)),
        Err(e) => failed(e),
    }
}

async fn propose(State(region): Shared, Json(req): Json<ProposeRequest>) -> Json<ProposeReply> {
    let topology = match region.topology() {
        Ok(t) => t,
        Err(e) => return Json(ProposeReply::Retry(e.to_string())),
    };
    if topology.role != RegionRole::Primary || req.epoch != topology.epoch {
        return Json(ProposeReply::NotPrimary(topology));
    }
    let outcome = region.propose_as_primary(req.command).await;
    let seq = region.seq().unwrap_or(0);
    Json(match outcome {
        Ok(applied) => ProposeReply::Done {
            outcome: Ok(applied),
            seq,
        },
        Err(CoreError::Refused(refusal)) => ProposeReply::Done {
            outcome: Err(refusal),
            seq,
        },
        Err(CoreError::Unavailable(m)) => ProposeReply::Retry(m),
        Err(CoreError::ReadOnly { detail, .. }) => ProposeReply::ReadOnly(detail),
        Err(e) => ProposeReply::Failed(e.to_string()),
    })
}

/// A lease request (the primary's heartbeat). Granted only by the leader of a secondary
/// region whose epoch matches; a newer epoch on either side is learned.
async fn lease(
    State(region): Shared,
    Json(req): Json<LeaseRequest>,
) -> Json<Result<LeaseReply, String>> {
    if let Err(e) = region.learn(&req.topology).await {
        return failed(e);
    }
    let mine = match region.topology() {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let from_our_primary = req.topology.epoch == mine.epoch
        && req.topology.role == RegionRole::Primary
        && req.topology.region == mine.primary;
    if from_our_primary {
        region.heard_from_primary();
        if let Ok(seq) = region.seq() {
            region.record_lag(req.head.saturating_sub(seq));
        }
    }
    let granted = from_our_primary
        && mine.role == RegionRole::Secondary
        && region.is_leader()
        && !region.changing_role.load(Ordering::SeqCst);
    if granted {
        // Promise: no promotion by this region before the primary's lease has run out. The
        // margin covers the request's flight time and clock rate differences.
        region.grant_until(region.now_ms() + req.lease_ms + req.lease_ms / 2);
    }
    Json(Ok(LeaseReply {
        granted,
        topology: mine,
    }))
}

async fn status_handler(State(region): Shared) -> Json<Result<serde_json::Value, String>> {
    match status::local(&region) {
        Ok(v) => Json(Ok(v)),
        Err(e) => failed(e),
    }
}

async fn fence(State(region): Shared, Json(req): Json<FenceRequest>) -> Json<FenceReply> {
    Json(
        match crate::failover::fence_local(&region, req.epoch, req.lift).await {
            Ok(reply) => reply,
            Err(e) => FenceReply::Failed(e.to_string()),
        },
    )
}

async fn demote(State(region): Shared, Json(req): Json<DemoteRequest>) -> Json<Result<(), String>> {
    match region.learn(&req.topology).await {
        Ok(()) => Json(Ok(())),
        Err(e) => failed(e),
    }
}

/// An operator request relayed from a node of another region (e.g. `switchover --to` this
/// region, asked anywhere).
async fn admin(
    State(region): Shared,
    Json(req): Json<RegionRequest>,
) -> Json<Result<serde_json::Value, String>> {
    match crate::control::handle_local(&region, req).await {
        Ok(v) => Json(Ok(v)),
        Err(e) => failed(e),
    }
}
