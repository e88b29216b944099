//! `RegionLog`: the `CommandLog` a node of a multi-region deployment runs on. It wraps the
//! region's own log (single-node or Raft) and decides where a vault command may go:
//! - on the primary, into the region's log, while it is not fenced and holds its lease;
//! - on a secondary, to the primary over the region channel (the client gets the primary's
//!   one answer), or, when the primary is out of reach, nowhere: `ReadOnly`, at once.
//!
//! Region commands always go to the region's own log. Reads are the region's own (the inner
//! log's read barrier): a secondary answers from its replicated state.

use crate::client::CallError;
use crate::protocol::{ProposeReply, ProposeRequest, PROPOSE};
use crate::region::Region;
use keystead_core::log::{BarrierFuture, ProposeFuture};
use keystead_core::{CommandLog, CoreError};
use keystead_model::{Applied, Command, RegionRole};
use std::sync::Arc;
use std::time::Duration;

/// A forwarded write may wait for the primary's quorum (5 s) and a lease (1 s).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(8);

pub struct RegionLog {
    region: Arc<Region>,
}

impl RegionLog {
    pub fn new(region: Arc<Region>) -> RegionLog {
        RegionLog { region }
    }
}

impl CommandLog for RegionLog {
    fn propose(&self, command: Command) -> ProposeFuture<'_> {
        Box::pin(async move {
            if command.is_region_local() {
                return self.region.inner.propose(command).await;
            }
            match self.region.state()? {
                // Not configured yet (first start): the region's own log.
                None => self.region.inner.propose(command).await,
                Some(state) if state.role == RegionRole::Primary => {
                    self.region.propose_as_primary(command).await
                }
                Some(state) => forward(&self.region, state.epoch, &state.primary, command).await,
            }
        })
    }

    fn read_barrier(&self) -> BarrierFuture<'_> {
        self.region.inner.read_barrier()
    }

    fn runs_timers(&self) -> bool {
        let primary = matches!(
            self.region.state(),
            Ok(Some(state)) if state.role == RegionRole::Primary
        );
        primary && self.region.inner.runs_timers()
    }
}

/// Resolves once this region has not heard from its primary for the contact window.
async fn contact_lost(region: &Region) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !region.primary_reachable() {
            return;
        }
    }
}

/// Sends a write to the primary region and waits until it has come back through the stream.
async fn forward(
    region: &Region,
    epoch: u64,
    primary: &str,
    command: Command,
) -> Result<Applied, CoreError> {
    let read_only = |detail: String| CoreError::ReadOnly {
        region: region.settings.name.clone(),
        detail,
    };
    if !region.primary_reachable() {
        return Err(read_only(format!(
            "it is a secondary and its primary region {primary} is unreachable \
             (epoch {epoch}; {})",
            crate::status::failover_state(region)
        )));
    }
    let peer = region
        .settings
        .peer(primary)
        .ok_or_else(|| read_only(format!("primary region {primary} is not configured here")))?;
    let request = ProposeRequest { epoch, command };
    let call = region
        .client
        .first(&peer.addrs, PROPOSE, &request, FORWARD_TIMEOUT);
    // A region that vanishes drops packets rather than refusing connections: a forward on a
    // connection opened before would hang until its timeout. Give up as soon as the heartbeat
    // says the primary is gone (the write may have arrived: outcome unknown, so 503, which
    // the SDKs retry — and the retry is refused at once, or forwarded to a new primary).
    let reply = tokio::select! {
        reply = call => reply,
        () = contact_lost(region) => {
            return Err(CoreError::Unavailable(format!(
                "lost contact with primary region {primary} while forwarding; the outcome is unknown"
            )))
        }
    };
    let reply: ProposeReply = match reply {
        Ok(reply) => reply,
        Err(CallError::Unreachable(e)) => {
            return Err(read_only(format!(
                "it is a secondary and its primary region {primary} is unreachable ({e})"
            )))
        }
        Err(CallError::Failed(e)) => {
            return Err(CoreError::Unavailable(format!(
                "forwarding to primary region {primary} failed; the outcome is unknown ({e})"
            )))
        }
    };
    match reply {
        ProposeReply::Done { outcome, seq } => {
            region.wait_for_seq(seq).await;
            outcome.map_err(CoreError::Refused)
        }
        ProposeReply::NotPrimary(topology) => {
            region.learn(&topology).await?;
            Err(CoreError::Unavailable(format!(
                "region {primary} is no longer the primary (epoch {}, primary {}); retry",
                topology.epoch, topology.primary
            )))
        }
        ProposeReply::Retry(m) => Err(CoreError::Unavailable(m)),
        ProposeReply::ReadOnly(m) => Err(read_only(m)),
        ProposeReply::Failed(m) => Err(CoreError::Internal(m)),
    }
}
