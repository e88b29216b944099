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
/// Pause between pulls once caught up.
const IDLE_POLL: Duration = Duration::from_millis(100);
const PULL_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(region: Arc<Region>) {
    loop {
        let more = match pull_once(&region).await {
            Ok(more) => more,
            Err(e) => {
                tracing::debug!(error = %e, "replication pull failed");
                false
            }
        };
        if !more {
            tokio::time::sleep(IDLE_POLL).await;
        }
    }
}

/// One pull; `Ok(true)` if there is more to fetch right away.
async fn pull_once(region: &Region) -> Result<bool, CoreError> {
    if !region.is_leader() {
        return Ok(false);
    }
    let Some(state) = region.state()? else {
        return Ok(false);
    };
    if state.role != RegionRole::Secondary {
        region.record_lag(0);
        return Ok(false);
    }
    let Some(peer) = region.settings.peer(&state.primary) else {
        return Ok(false);
    };
    let seq = region.seq()?;
    let request = StreamRequest {
        from: seq + 1,
        limit: BATCH,
    };
    let reply: Result<StreamReply, String> = region
        .client
        .first(&peer.addrs, STREAM, &request, PULL_TIMEOUT)
        .await
        .map_err(|e| CoreError::Unavailable(e.to_string()))?;
    let reply = reply.map_err(CoreError::Unavailable)?;
    if reply.topology.epoch > state.epoch {
        region.learn(&reply.topology).await?;
        return Ok(true);
    }
    if reply.topology.epoch < state.epoch || reply.topology.role != RegionRole::Primary {
        // A stale former primary, or not the primary: nothing to take from it.
        return Ok(false);
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
        return Ok(true);
    }
    if reply.snapshot_needed {
        install_snapshot(region, &peer.addrs).await?;
        return Ok(true);
    }
    let fetched = reply.entries.len();
    if fetched > 0 {
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
    Ok(fetched == BATCH)
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
