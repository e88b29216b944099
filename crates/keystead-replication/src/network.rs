//! Node-to-node transport, client side: openraft's network (append entries, vote, install
//! snapshot), carried by `stream_client.rs` over mutual TLS; and `PeerClient`, the HTTPS
//! client with the same certificates that the region crate uses between regions. Every node
//! presents a certificate from the cluster's CA and accepts only peers that do.

use crate::early_append::{EarlyOutcome, EarlySend, EarlySender};
use crate::frame::Kind;
use crate::leader_lease::LeaderLease;
use crate::stream_client::StreamClient;
use crate::types::{NodeInfo, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// PEM material for mutual TLS between nodes.
#[derive(Clone)]
pub struct PeerTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: zeroize::Zeroizing<Vec<u8>>,
}

/// An HTTPS client that presents this node's certificate and trusts only the cluster CA.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

impl TransportError {
    pub(crate) fn new(message: impl Into<String>) -> TransportError {
        TransportError(message.into())
    }
}

impl PeerClient {
    /// `source` binds outgoing connections to one local address (multi-homed hosts; the
    /// partition tests give every node its own loopback address this way).
    pub fn new(tls: &PeerTls, source: Option<std::net::IpAddr>) -> Result<PeerClient, String> {
        let mut identity_pem = tls.cert_pem.clone();
        identity_pem.extend_from_slice(&tls.key_pem);
        let identity = reqwest::Identity::from_pem(&identity_pem)
            .map_err(|e| format!("node identity: {e}"))?;
        zeroize::Zeroize::zeroize(&mut identity_pem);
        let ca =
            reqwest::Certificate::from_pem(&tls.ca_pem).map_err(|e| format!("cluster CA: {e}"))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .identity(identity)
            .connect_timeout(Duration::from_millis(500))
            .local_address(source)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("peer client: {e}"))?;
        Ok(PeerClient { http })
    }

    /// POSTs `body` as JSON to `https://{addr}{path}` and decodes the JSON answer.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, PeerFailure> {
        let response = self
            .http
            .post(format!("https://{addr}{path}"))
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    PeerFailure::Unreachable(TransportError(e.to_string()))
                } else {
                    PeerFailure::Network(TransportError(e.to_string()))
                }
            })?;
        if !response.status().is_success() {
            return Err(PeerFailure::Network(TransportError(format!(
                "peer answered {}",
                response.status()
            ))));
        }
        response
            .json()
            .await
            .map_err(|e| PeerFailure::Network(TransportError(e.to_string())))
    }
}

/// Why a peer call failed before an answer was decoded.
#[derive(Debug)]
pub enum PeerFailure {
    Unreachable(TransportError),
    Network(TransportError),
}

impl PeerFailure {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, NodeInfo, E> {
        match self {
            PeerFailure::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            PeerFailure::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

/// Creates a connection per target node; all share one pool of TLS streams
/// (`stream_client.rs`), and report followers' acknowledgements of this node's leadership to
/// the leader lease.
#[derive(Clone)]
pub struct Network {
    client: Arc<StreamClient>,
    lease: Arc<LeaderLease>,
}

impl Network {
    pub fn new(client: Arc<StreamClient>, lease: Arc<LeaderLease>) -> Network {
        Network { client, lease }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Connection {
        Connection {
            client: self.client.clone(),
            target,
            node: node.clone(),
            lease: self.lease.clone(),
        }
    }
}

pub struct Connection {
    client: Arc<StreamClient>,
    target: u64,
    node: NodeInfo,
    lease: Arc<LeaderLease>,
}

impl Connection {
    async fn call<B: Serialize, R: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        kind: Kind,
        body: &B,
        option: &RPCOption,
    ) -> Result<R, RPCError<u64, NodeInfo, RaftError<u64, E>>> {
        let answer: Result<R, RaftError<u64, E>> = self
            .client
            .call(&self.node.addr, kind, body, option.hard_ttl())
            .await
            .map_err(PeerFailure::into_rpc)?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// How long openraft waits before it retries a node it could not reach (its default is
/// 500 ms). A node that restarts is reached this soon after it listens again, before it would
/// call an election of its own (`cluster::hold_elections_after_restart`).
pub(crate) const REPLICATION_BACKOFF: Duration = Duration::from_millis(200);

impl RaftNetwork<TypeConfig> for Connection {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(REPLICATION_BACKOFF))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        // Read before the request leaves: the follower's lease starts later than this.
        let sent = tokio::time::Instant::now();
        let response = self.call(Kind::Append, &rpc, &option).await?;
        if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
            self.lease.acknowledged(self.target, &rpc.vote, sent);
        }
        Ok(response)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}

/// Early appends (`early_append.rs`) over the same pooled streams as openraft's own requests.
pub struct StreamEarlySender(pub Arc<StreamClient>);

/// An early append that has no answer in this long is abandoned (openraft's own replication
/// carries the entry anyway).
const EARLY_APPEND_TIMEOUT: Duration = Duration::from_secs(1);

impl EarlySender for StreamEarlySender {
    fn send(&self, node: &NodeInfo, request: AppendEntriesRequest<TypeConfig>) -> EarlySend {
        let client = self.0.clone();
        let addr = node.addr.clone();
        Box::pin(async move {
            let answer: Result<Result<AppendEntriesResponse<u64>, RaftError<u64>>, PeerFailure> =
                client
                    .call(&addr, Kind::Append, &request, EARLY_APPEND_TIMEOUT)
                    .await;
            EarlyOutcome::of_answer(answer)
        })
    }
}
