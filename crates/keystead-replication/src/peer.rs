//! Node-to-node transport, server side: the cluster listener (HTTPS, client certificates from
//! the cluster CA required) serving openraft's RPCs, forwarded writes and read-index requests.

use crate::leader_lease::LeaderLease;
use crate::network::PeerTls;
use crate::raft_log::RaftLog;
use crate::read_batch::ReadBatcher;
use crate::types::{LogId, NodeInfo, Raft, Response, TypeConfig};
use crate::write_batch::WriteBatcher;
use axum::extract::{FromRef, State};
use axum::routing::post;
use axum::{Json, Router};
use keystead_core::CoreError;
use keystead_model::Command;
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The answer to a forwarded write or read-index request.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerAnswer<T> {
    Done(T),
    /// This node is not the leader; try this one (if known).
    NotLeader(Option<NodeInfo>),
    /// Leadership could not be confirmed or the write failed for a non-client reason.
    Failed(String),
}

/// What the cluster listener's handlers share: the Raft handle, the node's `RaftLog`, whose
/// leader-side read-index rounds followers' requests share with this node's own readers, and
/// the write batcher, which forwarded writes share with this node's own writers.
#[derive(Clone)]
pub(crate) struct PeerState {
    pub(crate) raft: Raft,
    pub(crate) log: Arc<RaftLog>,
    pub(crate) writes: Arc<WriteBatcher>,
}

impl FromRef<PeerState> for Raft {
    fn from_ref(state: &PeerState) -> Raft {
        state.raft.clone()
    }
}

pub(crate) fn router(state: PeerState) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/propose", post(propose))
        .route("/raft/read-index", post(read_index))
        .with_state(state)
}

async fn append(
    State(raft): State<Raft>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<serde_json::Value> {
    Json(to_json(raft.append_entries(rpc).await))
}

async fn vote(
    State(raft): State<Raft>,
    Json(rpc): Json<VoteRequest<u64>>,
) -> Json<serde_json::Value> {
    Json(to_json(raft.vote(rpc).await))
}

async fn snapshot(
    State(raft): State<Raft>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<serde_json::Value> {
    Json(to_json(raft.install_snapshot(rpc).await))
}

fn to_json<T: Serialize>(value: T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|e| serde_json::json!({"Err": e.to_string()}))
}

/// Appends a command forwarded by a follower, if this node is the leader, in a batch with
/// whatever else is being written.
async fn propose(
    State(state): State<PeerState>,
    Json(command): Json<Command>,
) -> Json<PeerAnswer<Response>> {
    Json(state.writes.propose(command).await)
}

/// The leader's read index: once a quorum confirmed leadership, the log id every linearizable
/// read must see applied.
pub(crate) async fn read_index_local(raft: &Raft) -> PeerAnswer<Option<LogId>> {
    match raft.ensure_linearizable().await {
        Ok(log_id) => PeerAnswer::Done(log_id),
        Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
            PeerAnswer::NotLeader(f.leader_node)
        }
        Err(e) => PeerAnswer::Failed(e.to_string()),
    }
}

/// One read-index round on this node, unshared: from the leader lease when it holds
/// (`leader_lease.rs`), else from a heartbeat round to a quorum.
pub(crate) async fn read_index_round(
    raft: &Raft,
    lease: &LeaderLease,
) -> PeerAnswer<Option<LogId>> {
    if let Some(index) = lease.read_index(raft).await {
        return PeerAnswer::Done(Some(index));
    }
    read_index_local(raft).await
}

/// The read index on the leader, from a round shared by every read-index request that arrived
/// before it started: this node's own readers and every follower's. A round is answered by the
/// leader lease when it holds (`leader_lease.rs`), else by a heartbeat to a quorum; sharing
/// rounds across followers saves the leader (and the followers answering the heartbeats) one
/// round per follower batch. Linearizable for the same reason the local batching is: a
/// request only joins a round that starts after it arrived. A node that does not lead answers
/// at once, with the leader it knows of.
pub(crate) async fn read_index_shared(
    raft: &Raft,
    leader_reads: &ReadBatcher,
    lease: &LeaderLease,
) -> PeerAnswer<Option<LogId>> {
    let leads = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        metrics.current_leader == Some(metrics.id)
    };
    if !leads {
        return read_index_local(raft).await;
    }
    let round = || async {
        match read_index_round(raft, lease).await {
            PeerAnswer::Done(index) => Ok(index),
            PeerAnswer::NotLeader(_) => Err(CoreError::Unavailable("leadership changed".into())),
            PeerAnswer::Failed(e) => Err(CoreError::Unavailable(e)),
        }
    };
    match leader_reads.read_index(round).await {
        Ok(index) => PeerAnswer::Done(index),
        Err(e) => PeerAnswer::Failed(e.to_string()),
    }
}

async fn read_index(State(state): State<PeerState>) -> Json<PeerAnswer<Option<LogId>>> {
    Json(state.log.serve_read_index().await)
}

/// rustls server configuration for the cluster listener: our certificate, and client
/// certificates required and verified against the cluster CA.
pub fn server_tls(tls: &PeerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        let cert = cert.map_err(|e| format!("cluster CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("cluster CA: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("node certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| format!("node key: {e}"))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("cluster TLS: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
