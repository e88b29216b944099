//! What the cluster listener (`stream_server.rs`) answers: openraft's RPCs, writes forwarded by
//! followers and followers' read-index requests; and the TLS configuration of the listeners
//! that other nodes call (the cluster listener, the region listener, the witness).

use crate::frame::{self, Kind};
use crate::leader_lease::LeaderLease;
use crate::network::PeerTls;
use crate::raft_log::RaftLog;
use crate::read_batch::ReadBatcher;
use crate::types::{LogId, NodeInfo, Raft, Response};
use crate::write_batch::WriteBatcher;
use keystead_core::CoreError;
use keystead_model::Command;
use openraft::error::RaftError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
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

/// Answers one request from another node of the region (`stream_server.rs` calls this for
/// each request frame): `None` closes the stream, for a body that does not decode.
pub(crate) async fn answer(state: &PeerState, kind: Kind, body: &[u8]) -> Option<Vec<u8>> {
    let encoded = match kind {
        Kind::Append => frame::encode_answer(&state.raft.append_entries(decode(body)?).await),
        Kind::Vote => frame::encode_answer(&state.raft.vote(decode(body)?).await),
        Kind::Snapshot => frame::encode_answer(&state.raft.install_snapshot(decode(body)?).await),
        Kind::Propose => frame::encode_answer(&propose(state, decode(body)?).await),
        Kind::ReadIndex => frame::encode_answer(&state.log.serve_read_index().await),
    };
    encoded
        .map_err(|e| tracing::warn!(?kind, error = %e, "cluster listener: answer not encoded"))
        .ok()
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// Appends a command forwarded by a follower, if this node is the leader, in a batch with
/// whatever else is being written.
async fn propose(state: &PeerState, command: Command) -> PeerAnswer<Response> {
    state.writes.propose(command).await
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

/// The cluster listener's rustls configuration: [`server_tls`] without the HTTP protocol
/// names, since the listener speaks `frame.rs`.
pub(crate) fn cluster_listener_tls(tls: &PeerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = (*server_tls(tls)?).clone();
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}
