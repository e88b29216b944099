//! Cluster membership administration (`keystead cluster status|join|remove`) on top of
//! openraft, behind core's `ClusterAdmin` seam.

use crate::cluster::ClusterNode;
use crate::types::NodeInfo;
use keystead_core::cluster::{AdminFuture, ClusterAdmin, JoinRequest};
use keystead_core::CoreError;
use openraft::ChangeMembers;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// A node more than this many entries behind its own log is not ready for traffic.
const READY_MAX_LAG: u64 = 100;

impl ClusterNode {
    fn not_leader(&self) -> CoreError {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.api_addr.clone())
        });
        CoreError::BadParameter(format!(
            "this node is not the leader; send membership changes to the leader{}",
            leader.map(|a| format!(" at {a}")).unwrap_or_default()
        ))
    }
}

/// Refuses layouts where one zone alone holds a voting majority: losing that zone would then
/// lose the quorum, defeating zone redundancy.
pub fn check_layout(voters: &BTreeMap<u64, NodeInfo>) -> Result<(), String> {
    if voters.len() <= 1 {
        return Ok(());
    }
    let majority = voters.len() / 2 + 1;
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for node in voters.values() {
        *per_zone.entry(node.zone.as_str()).or_default() += 1;
    }
    match per_zone.iter().find(|(_, count)| **count >= majority) {
        Some((zone, count)) => Err(format!(
            "zone {zone} would hold {count} of {} voters, a majority: losing that zone would stop writes. Add nodes in other zones first, or pass --allow-unsafe-layout.",
            voters.len()
        )),
        None => Ok(()),
    }
}

impl ClusterAdmin for ClusterNode {
    fn status(&self) -> AdminFuture<'_> {
        Box::pin(async move {
            let m = self.raft.metrics().borrow().clone();
            let (lease_reads, heartbeat_rounds) = self.lease.counts();
            let early = self.early.counts();
            let membership = m.membership_config.membership();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let leader_last = m.last_log_index.unwrap_or(0);
            let nodes: Vec<_> = membership
                .nodes()
                .map(|(id, node)| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|log_id| log_id.index);
                    let role = if Some(*id) == m.current_leader {
                        "leader"
                    } else if voters.contains(id) {
                        "follower"
                    } else {
                        "learner"
                    };
                    // Only the leader tracks replication: elsewhere health is "unknown".
                    let health = match (&m.replication, matched) {
                        (None, _) if Some(*id) == m.current_leader => "healthy",
                        (None, _) => "unknown (ask the leader)",
                        (Some(_), _) if Some(*id) == m.current_leader => "healthy",
                        (Some(_), None) => "unreachable",
                        (Some(_), Some(i)) if leader_last.saturating_sub(i) > READY_MAX_LAG => {
                            "lagging"
                        }
                        (Some(_), Some(_)) => "healthy",
                    };
                    json!({
                        "node_id": id,
                        "health": health,
                        "addr": node.addr,
                        "api_addr": node.api_addr,
                        "zone": node.zone,
                        "region": node.region,
                        "role": role,
                        "matched_index": matched,
                        "lag": matched.map(|i| leader_last.saturating_sub(i)),
                    })
                })
                .collect();
            Ok(json!({
                "node_id": m.id,
                "state": format!("{:?}", m.state),
                "term": m.current_term,
                "leader": m.current_leader,
                "last_log_index": m.last_log_index,
                "last_applied": m.last_applied.map(|l| l.index),
                "snapshot": m.snapshot.map(|l| l.index),
                "read_index": {
                    "lease": lease_reads,
                    "heartbeat_round": heartbeat_rounds,
                },
                // Since this node started, as leader (`early_append.rs`).
                "early_appends": {
                    "accepted": early.accepted,
                    "refused": early.refused,
                    "failed": early.failed,
                    "skipped": early.skipped,
                },
                "nodes": nodes,
            }))
        })
    }

    fn join(&self, request: JoinRequest) -> AdminFuture<'_> {
        Box::pin(async move {
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.current_leader != Some(metrics.id) {
                return Err(self.not_leader());
            }
            let info = NodeInfo {
                addr: request.addr.clone(),
                api_addr: request.api_addr.clone(),
                zone: request.zone.clone(),
                region: request.region.clone(),
            };
            let membership = metrics.membership_config.membership().clone();
            let mut voters: BTreeMap<u64, NodeInfo> = membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
                .collect();
            voters.insert(request.node_id, info.clone());
            if !request.allow_unsafe_layout {
                check_layout(&voters).map_err(CoreError::BadParameter)?;
            }
            self.raft
                .add_learner(request.node_id, info, true)
                .await
                .map_err(|e| CoreError::Unavailable(format!("adding learner: {e}")))?;
            self.raft
                .change_membership(
                    ChangeMembers::AddVoterIds(BTreeSet::from([request.node_id])),
                    false,
                )
                .await
                .map_err(|e| CoreError::Unavailable(format!("promoting to voter: {e}")))?;
            self.status().await
        })
    }

    fn readiness(&self) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader.is_none() {
            return Err("no leader known: not part of a working quorum".into());
        }
        if m.current_leader == Some(m.id) {
            // A leader that has not heard from a quorum recently may be partitioned away.
            let stale = m
                .millis_since_quorum_ack
                .is_none_or(|ms| ms > self.settings.election_timeout_ms.1);
            if stale && m.membership_config.membership().voter_ids().count() > 1 {
                return Err("leader without a recent quorum acknowledgement".into());
            }
        }
        let applied = m.last_applied.map_or(0, |l| l.index);
        let last = m.last_log_index.unwrap_or(0);
        if last.saturating_sub(applied) > READY_MAX_LAG {
            return Err(format!("catching up: applied {applied} of {last}"));
        }
        Ok(())
    }

    fn remove(&self, node_id: u64) -> AdminFuture<'_> {
        Box::pin(async move {
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.current_leader != Some(metrics.id) {
                return Err(self.not_leader());
            }
            let ids = BTreeSet::from([node_id]);
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
                .await
                .map_err(|e| CoreError::Unavailable(format!("removing voter: {e}")))?;
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(ids), false)
                .await
                .map_err(|e| CoreError::Unavailable(format!("removing node: {e}")))?;
            self.status().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(zone: &str) -> NodeInfo {
        NodeInfo {
            zone: zone.into(),
            ..Default::default()
        }
    }

    #[test]
    fn one_zone_must_not_hold_a_majority() {
        let ok = BTreeMap::from([(1, node("a")), (2, node("b")), (3, node("c"))]);
        assert!(check_layout(&ok).is_ok());
        let bad = BTreeMap::from([(1, node("a")), (2, node("a")), (3, node("c"))]);
        assert!(check_layout(&bad).is_err());
        let two = BTreeMap::from([(1, node("a")), (2, node("a"))]);
        assert!(check_layout(&two).is_err());
        assert!(check_layout(&BTreeMap::from([(1, node("a"))])).is_ok());
    }
}
