//! The operator's entry point (`keystead region ...` through the admin API): status, switchover,
//! failover and divergence records. A request about another region is relayed to it.

use crate::protocol::ADMIN;
use crate::region::Region;
use crate::{divergence, failover, status};
use keystead_core::cluster::AdminFuture;
use keystead_core::region::{RegionControl, RegionRequest, RegionView};
use keystead_core::CoreError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A role change waits for catch-up (30 s) and the witness.
const RELAY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct RegionHandle(pub Arc<Region>);

impl RegionControl for RegionHandle {
    fn view(&self) -> Option<RegionView> {
        let state = self.0.state().ok()??;
        let (lag_entries, lag_seconds) = self.0.lag(state.role);
        Some(RegionView {
            region: state.region,
            role: state.role,
            primary: state.primary,
            epoch: state.epoch,
            primary_reachable: self.0.primary_in_reach(state.role),
            lag_entries,
            lag_seconds,
            failover_state: crate::status::failover_state(&self.0),
        })
    }

    fn admin(&self, request: RegionRequest) -> AdminFuture<'_> {
        Box::pin(handle_local(&self.0, request))
    }
}

pub(crate) async fn handle_local(
    region: &Arc<Region>,
    request: RegionRequest,
) -> Result<Value, CoreError> {
    let me = region.settings.name.clone();
    match request {
        RegionRequest::Status => status::full(region).await,
        RegionRequest::Switchover { to } if to == me => {
            run_to_completion(region, |region| async move {
                failover::switchover_to_me(&region).await
            })
            .await
        }
        RegionRequest::Failover { force: false, .. } => Err(CoreError::BadParameter(
            "a forced failover can lose writes the primary acknowledged but did not replicate \
             (they are kept as a divergence record); pass --force, or use switchover"
                .into(),
        )),
        RegionRequest::Failover { to, force: true } if to == me => {
            run_to_completion(region, |region| async move {
                failover::failover_to_me(&region).await
            })
            .await
        }
        RegionRequest::Switchover { ref to } | RegionRequest::Failover { ref to, .. } => {
            relay(region, to, &request).await
        }
        RegionRequest::DivergenceList => divergence::list(region),
        RegionRequest::DivergenceShow { id } => divergence::show(region, &id),
        RegionRequest::DivergenceApply { id } => divergence::apply(region, &id).await,
        RegionRequest::DivergenceDiscard { id } => divergence::discard(region, &id).await,
    }
}

/// Runs a role change on a task of its own and waits for it. The operator's request can be
/// dropped at any point (a client timeout, a closed connection, Ctrl-C), and with it the
/// handler's future; a switchover dropped between raising the primary's fence and promoting
/// (or lifting the fence again) would leave the primary refusing writes with nobody promoted.
/// On its own task the change always finishes one way or the other.
async fn run_to_completion<F, Fut>(region: &Arc<Region>, change: F) -> Result<Value, CoreError>
where
    F: FnOnce(Arc<Region>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, CoreError>> + Send + 'static,
{
    tokio::spawn(change(region.clone()))
        .await
        .map_err(|e| CoreError::Internal(format!("role change task: {e}")))?
}

async fn relay(region: &Region, to: &str, request: &RegionRequest) -> Result<Value, CoreError> {
    let peer = region
        .settings
        .peer(to)
        .ok_or_else(|| CoreError::BadParameter(format!("no region named {to}")))?;
    let answer: Result<Value, String> = region
        .client
        .first(&peer.addrs, ADMIN, request, RELAY_TIMEOUT)
        .await
        .map_err(|e| CoreError::Unavailable(format!("region {to}: {e}")))?;
    answer.map_err(|e| CoreError::Unavailable(format!("region {to}: {e}")))
}
