//! The primary's lease keeper and heartbeat. Every node of the primary region asks each peer
//! region and the witness for a lease every `lease / 4`; with grants from a majority of
//! {primary, secondaries, witness} (the primary counts itself) it may accept writes until
//! `sent + lease` (measured from when it asked, on its own clock). Any answer carrying a newer
//! epoch demotes this region at once.
//!
//! Without a witness no lease is needed (nobody promotes automatically), but the heartbeat
//! still runs: it is how a primary that was failed over learns the new epoch.

use crate::protocol::{LeaseReply, LeaseRequest, LEASE};
use crate::region::{topology_of, Region};
use keystead_model::RegionRole;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

pub async fn run(region: Arc<Region>) {
    let lease = region.settings.lease;
    let period = (lease / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = round(&region, lease).await {
            tracing::debug!(error = %e, "lease round failed");
        }
    }
}

async fn round(region: &Arc<Region>, lease: Duration) -> Result<(), keystead_core::CoreError> {
    let Some(state) = region.state()? else {
        return Ok(());
    };
    if state.role != RegionRole::Primary {
        region.drop_lease();
        return Ok(());
    }
    let request = Arc::new(LeaseRequest {
        topology: topology_of(&state),
        lease_ms: lease.as_millis() as u64,
        head: region.seq()?,
    });
    let sent = region.now_ms();
    // Every node of every peer region hears the heartbeat (each tracks its lag and whether the
    // primary is reachable); a region grants if its leader does. Voter `i` is peer region `i`,
    // the witness is the last.
    let mut targets: Vec<(usize, String)> = Vec::new();
    for (voter, peer) in region.settings.peers.iter().enumerate() {
        targets.extend(peer.addrs.iter().map(|addr| (voter, addr.clone())));
    }
    let mut voters = 1 + region.settings.peers.len();
    if let Some(witness) = &region.settings.witness {
        targets.push((voters - 1, witness.clone()));
        voters += 1;
    }
    let mut calls = JoinSet::new();
    for (voter, addr) in targets {
        let client = region.client.clone();
        let request = request.clone();
        calls.spawn(async move {
            let reply = client
                .first::<_, Result<LeaseReply, String>>(&[addr], LEASE, &*request, lease / 2)
                .await;
            (voter, reply)
        });
    }
    let mut granted = std::collections::BTreeSet::new();
    while let Some(joined) = calls.join_next().await {
        let Ok((voter, Ok(Ok(reply)))) = joined else {
            continue;
        };
        if reply.topology.epoch > state.epoch {
            region.drop_lease();
            region.learn(&reply.topology).await?;
            return Ok(());
        }
        if reply.granted {
            granted.insert(voter);
        }
    }
    let grants = 1 + granted.len();
    if grants * 2 > voters {
        region.set_lease_until(sent + lease.as_millis() as u64);
    }
    Ok(())
}
