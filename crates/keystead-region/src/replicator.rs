//! The secondary's replicator: pulls the primary's stream from this region's position and
//! proposes it to the region's own log (so a secondary region is zone-redundant too). Runs on
//! the region's leader only. Falls back to a snapshot when the primary no longer holds the
//! entries, and turns entries a superseded primary wrote that never became history into a
//! divergence record before replacing its state.

use crate::divergence;
use crate::protocol::{SnapshotReply, StreamReply, StreamRequest, SNAPSHOT, STREAM};
use crate::region::Region;
use base64::Engine;
use keystead_core::CoreError;
use keystead_model::{Command, RegionRole};
use std::sync::Arc;
use std::time::Duration;

/// Entries per pull.
const BATCH: usize = 500;
/// A caught-up pull waits this long at the primary for the next entry (long poll), so new
/// writes flow as soon as they are applied without a polling interval adding to the lag.
const LONG_POLL: Duration = Duration::from_millis(1000);
/// Pause after a failed or pointless pull (not leader, primary unreachable).
const IDLE_POLL: Duration = Duration::from_millis(100);
const PULL_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(region: Arc<Region>) {
    loop {
        match pull_once(&region).await {
            Ok(Pull::Again) => {}
            Ok(Pull::Idle) => tokio::time::sleep(IDLE_POLL).await,
            Err(e) => {
                tracing::debug!(error = %e, "replication pull failed");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// What to do after a pull.
enum Pull {
    /// Pull again at once (the long poll paces a caught-up secondary).
    Again,
    /// Nothing to do here for now (not the leader, not a secondary, a stale primary).
    Idle,
}

async fn pull_once(region: &Region) -> Result<Pull, CoreError> {
    if !region.is_leader() {
        return Ok(Pull::Idle);
    }
    let Some(state) = region.state()? else {
        return Ok(Pull::Idle);
    };
    if state.role != RegionRole::Secondary {
        region.record_lag(0);
        return Ok(Pull::Idle);
    }
    let Some(peer) = region.settings.peer(&state.primary) else {
        return Ok(Pull::Idle);
    };
    let seq = region.seq()?;
    let request = StreamRequest {
        from: seq + 1,
        limit: BATCH,
        wait_ms: LONG_POLL.as_millis() as u64,
    };
    let reply: Result<StreamReply, String> = region
        .client
        .first(&peer.addrs, STREAM, &request, PULL_TIMEOUT + LONG_POLL)
        .await
        .map_err(|e| CoreError::Unavailable(e.to_string()))?;
    let reply = reply.map_err(CoreError::Unavailable)?;
    if reply.topology.epoch > state.epoch {
        region.learn(&reply.topology).await?;
        return Ok(Pull::Again);
    }
    if reply.topology.epoch < state.epoch || reply.topology.role != RegionRole::Primary {
        // A stale former primary, or not the primary: nothing to take from it.
        return Ok(Pull::Idle);
    }
    region.heard_from_primary();
    // Did this region write entries (as a former primary) that the history left behind?
    if let Some(record) = divergence::detect(region, &state, &reply.topology)? {
        tracing::warn!(
            region = %region.settings.name,
            id = %record.id,
            entries = record.entries.len(),
            "writes of a superseded epoch kept as a divergence record"
        );
        region.inner.propose(Command::PutDivergence(record)).await?;
        install_snapshot(region, &peer.addrs).await?;
        return Ok(Pull::Again);
    }
    if reply.snapshot_needed {
        install_snapshot(region, &peer.addrs).await?;
        return Ok(Pull::Again);
    }
    if !reply.entries.is_empty() {
        region
            .inner
            .propose(Command::Replicate {
                entries: reply.entries,
            })
            .await?;
        region.progressed.notify_waiters();
    }
    let applied = region.seq()?;
    region.record_lag(reply.head.saturating_sub(applied));
    Ok(Pull::Again)
}

async fn install_snapshot(region: &Region, addrs: &[String]) -> Result<(), CoreError> {
    let reply: Result<SnapshotReply, String> = region
        .client
        .first(addrs, SNAPSHOT, &(), Duration::from_secs(60))
        .await
        .map_err(|e| CoreError::Unavailable(e.to_string()))?;
    let reply = reply.map_err(CoreError::Unavailable)?;
    let state = base64::engine::general_purpose::STANDARD
        .decode(reply.state.as_bytes())
        .map_err(|e| CoreError::Internal(format!("snapshot encoding: {e}")))?;
    tracing::info!(
        region = %region.settings.name,
        seq = reply.seq,
        bytes = state.len(),
        "installing the primary's snapshot"
    );
    region
        .inner
        .propose(Command::InstallRegionSnapshot {
            seq: reply.seq,
            epoch: reply.epoch,
            state,
        })
        .await?;
    region.progressed.notify_waiters();
    Ok(())
}
