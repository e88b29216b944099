//! The seam through which the HTTP layer sees regions without knowing the replication
//! protocol: `keystead-region` implements [`RegionControl`].

use crate::cluster::AdminFuture;
use keystead_model::RegionRole;
use serde::{Deserialize, Serialize};

/// This node's current picture of its region, cheap to read on every request.
#[derive(Clone, Debug)]
pub struct RegionView {
    pub region: String,
    pub role: RegionRole,
    pub primary: String,
    pub epoch: u64,
    /// A secondary heard from its primary recently (writes can be forwarded).
    pub primary_reachable: bool,
    /// How far this region's state is behind the primary's (0 on the primary).
    pub lag_entries: u64,
    pub lag_seconds: f64,
    /// What happens if the primary stays away, for error messages ("failover policy
    /// promote after 10 s", "failover policy read-only: …").
    pub failover_state: String,
}

/// What the operator asks of the region layer (`keystead region ...`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegionRequest {
    Status,
    /// Planned switchover to `to`: fence, catch up, promote; nothing acknowledged is lost.
    Switchover {
        to: String,
    },
    /// Promote `to` at its current position (`force` is required: writes the old primary
    /// acknowledged but did not replicate become a divergence record).
    Failover {
        to: String,
        force: bool,
    },
    DivergenceList,
    DivergenceShow {
        id: String,
    },
    DivergenceApply {
        id: String,
    },
    DivergenceDiscard {
        id: String,
    },
}

pub trait RegionControl: Send + Sync {
    /// `None` until the region state is configured.
    fn view(&self) -> Option<RegionView>;
    fn admin(&self, request: RegionRequest) -> AdminFuture<'_>;
}
