//! Role changes: planned switchover, promotion (forced by the operator or automatic), the
//! fence a primary raises for a switchover, and the monitor that runs automatic failover and
//! failback.
//!
//! Every role change is a `SetRegion` naming the epoch it expects, recorded first at the
//! witness (when there is one) so that at most one region is promoted per epoch.

use crate::protocol::*;
use crate::region::{merge_history, topology_of, Region};
use crate::settings::{Failback, FailoverPolicy};
use keystead_core::CoreError;
use keystead_model::{EpochStart, RegionRole, RegionState};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a switchover waits for the target to catch up to the fence.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
const MONITOR_PERIOD: Duration = Duration::from_millis(250);
/// Automatic failback tries at most this often.
const FAILBACK_RETRY_MS: u64 = 10_000;

/// Marks this node as running a role change for as long as it lives.
struct Changing<'a>(&'a Region);

impl<'a> Changing<'a> {
    fn begin(region: &'a Region) -> Result<Changing<'a>, CoreError> {
        if region.changing_role.swap(true, Ordering::SeqCst) {
            return Err(CoreError::Unavailable(
                "another role change is in progress on this node".into(),
            ));
        }
        Ok(Changing(region))
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.changing_role.store(false, Ordering::SeqCst);
    }
}

fn configured(region: &Region) -> Result<RegionState, CoreError> {
    region
        .state()?
        .ok_or_else(|| CoreError::Unavailable("the region is not configured yet".into()))
}

/// The primary's side of a switchover: raise (or lift) the write fence. Once the fence is
/// applied no write gets a later seq in this epoch, so the returned seq is final.
pub(crate) async fn fence_local(
    region: &Region,
    epoch: u64,
    lift: bool,
) -> Result<FenceReply, CoreError> {
    let state = configured(region)?;
    if state.role != RegionRole::Primary || state.epoch != epoch {
        return Ok(FenceReply::NotPrimary(topology_of(&state)));
    }
    let mut next = state.clone();
    next.fenced = !lift;
    region.set_state(state.epoch, next).await?;
    if lift {
        return Ok(FenceReply::Lifted);
    }
    Ok(FenceReply::Fenced { seq: region.seq()? })
}

/// Promotes this region at its current position with a new epoch. `fenced` says the old
/// primary is fenced at that position (switchover): the witness need not wait out its lease.
pub(crate) async fn promote(
    region: &Region,
    force: bool,
    fenced: bool,
) -> Result<Value, CoreError> {
    let state = configured(region)?;
    if state.role == RegionRole::Primary {
        return Err(CoreError::BadParameter(format!(
            "region {} is already the primary (epoch {})",
            state.region, state.epoch
        )));
    }
    let start_seq = region.seq()?;
    let epoch = state.epoch + 1;
    let me = region.settings.name.clone();
    let mut history = state.history.clone();
    if let Some(witness) = &region.settings.witness {
        let granted = ask_witness(region, witness, epoch, start_seq, force, fenced).await?;
        history = merge_history(&history, &granted.history);
    }
    history.push(EpochStart {
        epoch,
        primary: me.clone(),
        start_seq,
    });
    history = merge_history(&history, &[]);
    let promoted = RegionState {
        region: state.region.clone(),
        epoch,
        role: RegionRole::Primary,
        primary: me.clone(),
        fenced: false,
        history,
        outbox_keep: state.outbox_keep,
    };
    region.set_state(state.epoch, promoted.clone()).await?;
    tracing::warn!(region = %me, epoch, start_seq, "promoted to primary");
    // Tell the former primary at once (it also learns from any later heartbeat answer).
    if let Some(old) = region.settings.peer(&state.primary) {
        let demote = DemoteRequest {
            topology: topology_of(&promoted),
        };
        let _ = region
            .client
            .first::<_, Result<(), String>>(&old.addrs, DEMOTE, &demote, Duration::from_secs(2))
            .await;
    }
    Ok(
        json!({"region": me, "epoch": epoch, "start_seq": start_seq, "previous_primary": state.primary}),
    )
}

async fn ask_witness(
    region: &Region,
    witness: &str,
    epoch: u64,
    start_seq: u64,
    force: bool,
    fenced: bool,
) -> Result<Topology, CoreError> {
    let request = PromoteRequest {
        epoch,
        region: region.settings.name.clone(),
        start_seq,
        failover_after_ms: region.settings.failover_after.as_millis() as u64,
        force: force || fenced,
        fenced,
    };
    // A lease the witness granted runs out within one lease period; allow a few.
    for _ in 0..20 {
        let reply: PromoteReply = region
            .client
            .first(
                &[witness.to_string()],
                PROMOTE,
                &request,
                Duration::from_secs(2),
            )
            .await
            .map_err(|e| CoreError::Unavailable(format!("the witness is unreachable: {e}")))?;
        match reply {
            PromoteReply::Granted(topology) => return Ok(topology),
            PromoteReply::Wait { ms } => {
                tokio::time::sleep(Duration::from_millis(ms.clamp(10, 2000))).await
            }
            PromoteReply::Refused(why) => {
                return Err(CoreError::Unavailable(format!(
                    "the witness refused: {why}"
                )))
            }
        }
    }
    Err(CoreError::Unavailable(
        "the witness kept a lease to the old primary alive".into(),
    ))
}

/// Planned switchover to this region: fence the primary, catch up to the fence, promote.
/// Nothing the primary acknowledged is lost: every acknowledged write has a seq at or below
/// the fence, and this region holds them all before it accepts a write.
pub(crate) async fn switchover_to_me(region: &Region) -> Result<Value, CoreError> {
    let _changing = Changing::begin(region)?;
    let started = std::time::Instant::now();
    let state = configured(region)?;
    if state.role == RegionRole::Primary {
        return Err(CoreError::BadParameter(format!(
            "region {} is already the primary",
            state.region
        )));
    }
    let primary = region
        .settings
        .peer(&state.primary)
        .ok_or_else(|| CoreError::BadParameter(format!("unknown primary {}", state.primary)))?
        .addrs
        .clone();
    let fence = FenceRequest {
        epoch: state.epoch,
        lift: false,
    };
    let reply: FenceReply = region
        .client
        .first(&primary, FENCE, &fence, Duration::from_secs(10))
        .await
        .map_err(|e| {
            CoreError::Unavailable(format!("cannot reach the primary to fence it: {e}"))
        })?;
    let fence_seq = match reply {
        FenceReply::Fenced { seq } => seq,
        FenceReply::NotPrimary(topology) => {
            region.learn(&topology).await?;
            return Err(CoreError::Unavailable(format!(
                "{} is no longer the primary (epoch {}); retry",
                state.primary, topology.epoch
            )));
        }
        FenceReply::Lifted => return Err(CoreError::Internal("unexpected fence answer".into())),
        FenceReply::Failed(e) => return Err(CoreError::Unavailable(e)),
    };
    // Whatever stops the switchover after the fence went up must take the fence down again,
    // or the primary would stay unwritable.
    let lift_fence = || async {
        let lift = FenceRequest {
            epoch: state.epoch,
            lift: true,
        };
        let _ = region
            .client
            .first::<_, FenceReply>(&primary, FENCE, &lift, Duration::from_secs(5))
            .await;
    };
    let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT;
    if !region.wait_for_seq_until(fence_seq, deadline).await {
        lift_fence().await;
        return Err(CoreError::Unavailable(format!(
            "could not catch up to the fence at seq {fence_seq} in {CATCH_UP_LIMIT:?}; the fence was lifted"
        )));
    }
    let mut result = match promote(region, true, true).await {
        Ok(result) => result,
        Err(e) => {
            // Not promoted (the witness refused or is unreachable): nothing changed hands.
            if region.state()?.is_some_and(|s| s.epoch == state.epoch) {
                lift_fence().await;
            }
            return Err(CoreError::Unavailable(format!(
                "switchover aborted, the fence was lifted: {e}"
            )));
        }
    };
    result["fence_seq"] = json!(fence_seq);
    result["switchover_ms"] = json!(started.elapsed().as_millis() as u64);
    Ok(result)
}

/// Forced failover to this region, at its current position.
pub(crate) async fn failover_to_me(region: &Region) -> Result<Value, CoreError> {
    let _changing = Changing::begin(region)?;
    promote(region, true, false).await
}

/// Automatic failover (policy `promote`) and failback, on the region leader.
pub async fn monitor(region: Arc<Region>) {
    let mut last_failback_ms = 0u64;
    // After a refused promotion (the witness still hears the primary), wait before asking again.
    let mut next_promotion_ms = 0u64;
    loop {
        tokio::time::sleep(MONITOR_PERIOD).await;
        let Ok(Some(state)) = region.state() else {
            continue;
        };
        if state.role != RegionRole::Secondary || !region.is_leader() {
            continue;
        }
        if region.changing_role.load(Ordering::SeqCst) {
            continue;
        }
        let now = region.now_ms();
        if region.settings.failover == FailoverPolicy::Promote {
            let silent_since = region.primary_contact_ms().max(region.leader_since_ms());
            let silent_ms = now.saturating_sub(silent_since);
            if silent_ms >= region.settings.failover_after.as_millis() as u64
                && now >= region.granted_until_ms()
                && now >= next_promotion_ms
            {
                tracing::warn!(
                    region = %region.settings.name,
                    silent_ms,
                    "primary unreachable for failover_after; promoting"
                );
                let outcome = match Changing::begin(&region) {
                    Ok(_changing) => promote(&region, false, false).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "automatic promotion did not happen");
                    next_promotion_ms = region.now_ms() + 2000;
                }
                continue;
            }
        }
        if region.settings.failback == Failback::Automatic
            && region.settings.initial_primary == region.settings.name
            && region.primary_reachable()
            && region.lag(state.role).0 == 0
            && now.saturating_sub(last_failback_ms) > FAILBACK_RETRY_MS
        {
            last_failback_ms = now;
            tracing::info!(region = %region.settings.name, "caught up; failing back");
            if let Err(e) = switchover_to_me(&region).await {
                tracing::warn!(error = %e, "automatic failback did not happen");
            }
        }
    }
}
