//! `keystead witness`: a small third party in failover decisions. It keeps the deployment's
//! current epoch and primary durably, grants the primary leases (so a primary needs only one of
//! {secondary, witness} to keep writing), and records a promotion only when
//! - the new epoch is newer than any it knows,
//! - no lease it granted to the old primary is still running (unless the old primary is
//!   fenced), and
//! - it, too, has not heard from the old primary for `failover_after` (unless forced).
//!
//! At most one promotion per epoch can therefore succeed, and never while the old primary may
//! still acknowledge writes.

use crate::protocol::*;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use keystead_model::{EpochStart, RegionRole};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct WitnessSettings {
    pub listen: SocketAddr,
    /// Where the epoch and primary are kept.
    pub state_file: PathBuf,
    /// After a restart the witness does not know which leases it granted: it refuses to
    /// help promote anyone for this long (at least the longest lease in the deployment).
    pub restart_grace: Duration,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Durable {
    epoch: u64,
    primary: String,
    history: Vec<EpochStart>,
}

struct Volatile {
    /// A lease granted to `durable.primary` runs until then (ms since start).
    granted_until_ms: u64,
    /// Last lease request from the current primary.
    primary_contact_ms: u64,
}

pub struct Witness {
    settings: WitnessSettings,
    start: Instant,
    state: Mutex<(Durable, Volatile)>,
}

impl Witness {
    pub fn open(settings: WitnessSettings) -> Result<Arc<Witness>, String> {
        let durable = match std::fs::read(&settings.state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: {e}", settings.state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Durable::default(),
            Err(e) => return Err(format!("{}: {e}", settings.state_file.display())),
        };
        let grace = settings.restart_grace.as_millis() as u64;
        Ok(Arc::new(Witness {
            settings,
            start: Instant::now(),
            state: Mutex::new((
                durable,
                Volatile {
                    granted_until_ms: grace,
                    primary_contact_ms: 1,
                },
            )),
        }))
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn topology(durable: &Durable) -> Topology {
        Topology {
            region: "witness".into(),
            epoch: durable.epoch,
            role: RegionRole::Secondary,
            primary: durable.primary.clone(),
            history: durable.history.clone(),
        }
    }

    /// Writes the durable state with fsync before anyone is told about it.
    fn persist(&self, durable: &Durable) -> Result<(), String> {
        let path = &self.settings.state_file;
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(durable).map_err(|e| e.to_string())?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, String> {
        let now = self.now_ms();
        let mut guard = self.state.lock().map_err(|_| "witness state poisoned")?;
        let (durable, volatile) = &mut *guard;
        let theirs = &request.topology;
        if theirs.epoch > durable.epoch && theirs.role == RegionRole::Primary {
            let next = Durable {
                epoch: theirs.epoch,
                primary: theirs.primary.clone(),
                history: theirs.history.clone(),
            };
            self.persist(&next)?;
            *durable = next;
        }
        let granted = theirs.epoch == durable.epoch
            && theirs.role == RegionRole::Primary
            && theirs.region == durable.primary;
        if granted {
            volatile.primary_contact_ms = now;
            volatile.granted_until_ms = volatile
                .granted_until_ms
                .max(now + request.lease_ms + request.lease_ms / 2);
        }
        Ok(LeaseReply {
            granted,
            topology: Self::topology(durable),
        })
    }

    fn promote(&self, request: &PromoteRequest) -> Result<PromoteReply, String> {
        let now = self.now_ms();
        let mut guard = self.state.lock().map_err(|_| "witness state poisoned")?;
        let (durable, volatile) = &mut *guard;
        if request.epoch <= durable.epoch {
            return Ok(PromoteReply::Refused(format!(
                "epoch {} is not newer than {} (primary {})",
                request.epoch, durable.epoch, durable.primary
            )));
        }
        // Still in touch with the primary: no automatic promotion (checked first, so the
        // candidate hears it at once instead of waiting out a lease that keeps being renewed).
        let silent = now.saturating_sub(volatile.primary_contact_ms);
        if !request.force && silent < request.failover_after_ms {
            return Ok(PromoteReply::Refused(format!(
                "the witness heard from primary {} {silent} ms ago",
                durable.primary
            )));
        }
        if !request.fenced && now < volatile.granted_until_ms {
            return Ok(PromoteReply::Wait {
                ms: volatile.granted_until_ms - now,
            });
        }
        let mut next = durable.clone();
        next.epoch = request.epoch;
        next.primary = request.region.clone();
        next.history.push(EpochStart {
            epoch: request.epoch,
            primary: request.region.clone(),
            start_seq: request.start_seq,
        });
        self.persist(&next)?;
        *durable = next;
        volatile.granted_until_ms = 0;
        volatile.primary_contact_ms = now;
        tracing::warn!(epoch = durable.epoch, primary = %durable.primary, "witness recorded a promotion");
        Ok(PromoteReply::Granted(Self::topology(durable)))
    }

    fn status(&self) -> serde_json::Value {
        let now = self.now_ms();
        match self.state.lock() {
            Ok(guard) => json!({
                "role": "witness",
                "epoch": guard.0.epoch,
                "primary": guard.0.primary,
                "lease_granted_ms_left": guard.1.granted_until_ms.saturating_sub(now),
                "ms_since_primary": now.saturating_sub(guard.1.primary_contact_ms),
            }),
            Err(_) => json!({"role": "witness", "error": "state poisoned"}),
        }
    }
}

type Shared = State<Arc<Witness>>;

async fn lease(
    State(w): Shared,
    Json(req): Json<LeaseRequest>,
) -> Json<Result<LeaseReply, String>> {
    Json(w.lease(&req))
}

async fn promote(State(w): Shared, Json(req): Json<PromoteRequest>) -> Json<PromoteReply> {
    Json(w.promote(&req).unwrap_or_else(PromoteReply::Refused))
}

async fn status(State(w): Shared) -> Json<Result<serde_json::Value, String>> {
    Json(Ok(w.status()))
}

/// Serves the witness until the process ends.
pub async fn serve(
    witness: Arc<Witness>,
    tls: &keystead_replication::PeerTls,
) -> Result<(), String> {
    let config = keystead_replication::peer::server_tls(tls)?;
    let listen = witness.settings.listen;
    let app = Router::new()
        .route(LEASE, post(lease))
        .route(PROMOTE, post(promote))
        .route(STATUS, post(status))
        .with_state(witness);
    axum_server::bind_rustls(
        listen,
        axum_server::tls_rustls::RustlsConfig::from_config(config),
    )
    .serve(app.into_make_service())
    .await
    .map_err(|e| format!("witness listener on {listen}: {e}"))
}
