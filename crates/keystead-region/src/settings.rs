//! How one region is configured (`[region]` in a node's config).

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What a secondary does when it loses its primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailoverPolicy {
    /// Nothing automatic; the operator decides (`keystead region failover`).
    Manual,
    /// Azure's behaviour: the secondary keeps serving the read-only set, nothing is promoted.
    ReadOnly,
    /// Promote the secondary once neither it nor the witness has heard from the primary for
    /// `failover_after`.
    Promote,
}

/// Whether a recovered preferred primary takes its role back by itself once caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failback {
    Manual,
    Automatic,
}

/// Another region of the deployment: its name and the region listeners of its nodes.
#[derive(Clone, Debug, Deserialize)]
pub struct PeerRegion {
    pub name: String,
    pub addrs: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct RegionSettings {
    /// This region's name.
    pub name: String,
    /// Where this node's region listener binds (mTLS, deployment CA).
    pub listen: SocketAddr,
    /// The primary on first start; also the region automatic failback returns to.
    pub initial_primary: String,
    pub peers: Vec<PeerRegion>,
    /// The witness's listener, `host:port`.
    pub witness: Option<String>,
    pub failover: FailoverPolicy,
    pub failover_after: Duration,
    /// How long a lease granted to the primary lasts. The primary stops accepting writes when
    /// its lease runs out; the secondary promotes only after `failover_after` (> lease).
    pub lease: Duration,
    pub failback: Failback,
    /// Local address for outgoing region connections (fault tests).
    pub source_ip: Option<IpAddr>,
    /// Stream entries the outbox keeps (recorded in the region state on first start).
    pub outbox_keep: u64,
}

impl FailoverPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverPolicy::Manual => "manual",
            FailoverPolicy::ReadOnly => "read-only",
            FailoverPolicy::Promote => "promote",
        }
    }
}

impl Failback {
    pub fn as_str(self) -> &'static str {
        match self {
            Failback::Manual => "manual",
            Failback::Automatic => "automatic",
        }
    }
}

impl RegionSettings {
    pub fn peer(&self, name: &str) -> Option<&PeerRegion> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// Checks the relations between the timings that the safety argument relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.peers.is_empty() {
            return Err("[region] needs at least one peer region".into());
        }
        if self.peers.iter().any(|p| p.name == self.name) {
            return Err("[region] peers must not include this region".into());
        }
        if self.failover == FailoverPolicy::Promote {
            if self.witness.is_none() {
                return Err("failover = \"promote\" needs a witness".into());
            }
            if self.failover_after < self.lease * 2 {
                return Err("failover_after_ms must be at least twice lease_ms".into());
            }
        }
        Ok(())
    }
}
