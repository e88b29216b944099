//! Regions: a deployment has one primary region and one or more secondaries, each a
//! zone-redundant cluster (or a single node). The primary numbers every vault command it
//! applies (`seq`) and keeps recent ones in an outbox; each secondary's leader pulls them over
//! mutually authenticated TLS and appends them to its own log, so the secondary holds the same
//! ciphertext and is zone-redundant too. No plaintext crosses regions: both share the key
//! hierarchy and the stream carries sealed commands.
//!
//! - [`region`]: the shared runtime (state, leases, lag); [`log`]: `RegionLog`, the
//!   `CommandLog` that sends writes to wherever they may go.
//! - [`replicator`]: the secondary's pull loop; [`lease`]: the primary's lease and heartbeat.
//! - [`failover`]: switchover, promotion, the automatic-failover monitor.
//! - [`divergence`]: writes a superseded primary acknowledged, kept for the operator.
//! - [`service`]: the region listener; [`witness`]: the witness process.
//! - [`protocol`]: the messages; [`settings`]: the configuration.

pub mod client;
pub mod control;
pub mod divergence;
pub mod failover;
pub mod lease;
pub mod log;
pub mod protocol;
pub mod region;
pub mod replicator;
pub mod service;
pub mod settings;
pub mod status;
pub mod witness;

pub use control::RegionHandle;
pub use log::RegionLog;
pub use region::{LeaderCheck, Region};
pub use settings::{Failback, FailoverPolicy, PeerRegion, RegionSettings};

use keystead_core::CommandLog;
use keystead_replication::network::PeerClient;
use keystead_replication::PeerTls;
use keystead_store::Store;
use std::sync::Arc;

/// Starts this node's region runtime: the region listener, first-start configuration (on
/// the node that bootstraps its region), the replicator, the lease keeper and the failover
/// monitor. The node then runs on `RegionLog::new(region)`.
pub async fn start(
    settings: RegionSettings,
    store: Arc<Store>,
    inner: Arc<dyn CommandLog>,
    tls: &PeerTls,
    is_leader: LeaderCheck,
    bootstrap: bool,
) -> Result<Arc<Region>, String> {
    settings.validate()?;
    let client = client::RegionClient::new(PeerClient::new(tls, settings.source_ip)?);
    let region = Region::new(settings, store, inner, client, is_leader);
    service::serve(region.clone(), tls).await?;
    if bootstrap {
        let mut attempts = 0;
        while let Err(e) = region.configure().await {
            attempts += 1;
            if attempts >= 50 {
                return Err(format!("configuring the region: {e}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    tokio::spawn(replicator::run(region.clone()));
    tokio::spawn(lease::run(region.clone()));
    tokio::spawn(failover::monitor(region.clone()));
    Ok(region)
}
