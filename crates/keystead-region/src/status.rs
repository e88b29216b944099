//! `keystead region status`: this region's role, epoch, position and lag, and the same as seen
//! by every peer region and the witness.

use crate::protocol::STATUS;
use crate::region::Region;
use keystead_core::CoreError;
use keystead_model::{DivergenceStatus, RegionRole};
use serde_json::{json, Value};
use std::time::Duration;

const STATUS_TIMEOUT: Duration = Duration::from_millis(1500);

/// What this region does about a missing primary, in words.
pub(crate) fn failover_state(region: &Region) -> String {
    use crate::settings::FailoverPolicy;
    match region.settings.failover {
        FailoverPolicy::Promote => format!(
            "failover policy promote: this region is promoted once neither it nor the witness has heard from the primary for {} ms",
            region.settings.failover_after.as_millis()
        ),
        FailoverPolicy::ReadOnly => {
            "failover policy read-only: this region stays read-only until the operator fails over".into()
        }
        _ => "failover policy manual: the operator decides (keystead region failover)".into(),
    }
}

/// This node's own view.
pub(crate) fn local(region: &Region) -> Result<Value, CoreError> {
    let read = region.store.read()?;
    let Some(state) = read.region_state()? else {
        return Ok(json!({"region": region.settings.name, "configured": false}));
    };
    let (lag_entries, lag_seconds) = region.lag(state.role);
    let pending = read
        .divergences()?
        .iter()
        .filter(|r| r.status == DivergenceStatus::Pending)
        .count();
    Ok(json!({
        "region": state.region,
        "role": state.role.as_str(),
        "epoch": state.epoch,
        "primary": state.primary,
        "fenced": state.fenced,
        "seq": read.region_seq()?,
        "lag_entries": lag_entries,
        "lag_seconds": lag_seconds,
        "primary_reachable": region.primary_in_reach(state.role),
        "lease_valid": state.role == RegionRole::Primary && region.lease_valid(),
        "failover": region.settings.failover.as_str(),
        "failback": region.settings.failback.as_str(),
        "failover_state": failover_state(region),
        "outbox_keep": state.outbox_keep,
        "divergences_pending": pending,
        "history": state.history,
    }))
}

/// This region and every other region and the witness, as each reports itself.
pub(crate) async fn full(region: &Region) -> Result<Value, CoreError> {
    let mut regions = vec![local(region)?];
    for peer in &region.settings.peers {
        let answer: Result<Result<Value, String>, _> = region
            .client
            .first(&peer.addrs, STATUS, &(), STATUS_TIMEOUT)
            .await;
        regions.push(match answer {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => json!({"region": peer.name, "reachable": true, "error": e}),
            Err(e) => json!({"region": peer.name, "reachable": false, "error": e.to_string()}),
        });
    }
    let witness = match &region.settings.witness {
        None => Value::Null,
        Some(addr) => {
            let answer: Result<Result<Value, String>, _> = region
                .client
                .first(std::slice::from_ref(addr), STATUS, &(), STATUS_TIMEOUT)
                .await;
            match answer {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => json!({"reachable": true, "error": e}),
                Err(e) => json!({"reachable": false, "error": e.to_string()}),
            }
        }
    };
    Ok(json!({"regions": regions, "witness": witness}))
}
