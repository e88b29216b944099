//! Node transport, client side: requests to the other nodes of the region over pooled TLS
//! streams, one request in flight per stream (`frame.rs`). Each stream presents this node's
//! certificate and trusts only the cluster CA.
//!
//! A stream is taken out of the pool for a call and returned only after a whole answer was
//! read, so a call that fails or is abandoned half-way (a timeout, openraft dropping the
//! future) drops its stream with it and no later call can read a stale answer. A stream a
//! peer closed while it sat idle fails the next call on it; openraft and `RaftLog` retry.

use crate::frame::{self, FrameError, Kind};
use crate::leader_calls::{CallFuture, LeaderCalls};
use crate::network::{PeerFailure, PeerTls, TransportError};
use crate::types::{LogId, NodeInfo, Response};
use keystead_model::Command;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// TCP connect plus TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Idle streams kept per peer: enough for the replication stream, votes and a few
/// concurrent forwarded writes and read-index requests.
const MAX_IDLE_PER_PEER: usize = 8;
/// An idle stream older than this is dropped rather than used; the server closes streams
/// idle for longer (`stream_server::IDLE_TIMEOUT`).
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);
/// How long a forwarded write or read-index request may take.
const LEADER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

type PeerStream = TlsStream<TcpStream>;

/// Pooled mutual-TLS streams to the region's other nodes.
pub struct StreamClient {
    connector: TlsConnector,
    /// Local address for outgoing connections (multi-homed hosts; the partition tests give
    /// every node its own loopback address this way).
    source: Option<IpAddr>,
    idle: Mutex<HashMap<String, Vec<(PeerStream, Instant)>>>,
}

impl StreamClient {
    pub fn new(tls: &PeerTls, source: Option<IpAddr>) -> Result<StreamClient, String> {
        Ok(StreamClient {
            connector: TlsConnector::from(client_tls(tls)?),
            source,
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `body` as a `kind` request to the node at `addr` (`host:port`) and decodes its
    /// answer, all within `timeout`.
    pub async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        addr: &str,
        kind: Kind,
        body: &B,
        timeout: Duration,
    ) -> Result<R, PeerFailure> {
        let request = frame::encode_request(kind, body).map_err(network)?;
        let answer = tokio::time::timeout(timeout, self.exchange(addr, &request))
            .await
            .map_err(|_| PeerFailure::Network(TransportError::new("timed out")))??;
        serde_json::from_slice(&answer).map_err(|e| network(FrameError::Encode(e)))
    }

    async fn exchange(&self, addr: &str, request: &[u8]) -> Result<Vec<u8>, PeerFailure> {
        let mut stream = match self.take_idle(addr) {
            Some(stream) => stream,
            None => self.connect(addr).await?,
        };
        frame::write(&mut stream, request).await.map_err(network)?;
        let answer = frame::read(&mut stream).await.map_err(network)?;
        self.put_idle(addr, stream);
        Ok(answer)
    }

    fn take_idle(&self, addr: &str) -> Option<PeerStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.get_mut(addr)?;
        while let Some((stream, since)) = streams.pop() {
            if since.elapsed() < MAX_IDLE_AGE && !peer_closed(&stream) {
                return Some(stream);
            }
        }
        None
    }

    fn put_idle(&self, addr: &str, stream: PeerStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.entry(addr.to_string()).or_default();
        if streams.len() < MAX_IDLE_PER_PEER {
            streams.push((stream, Instant::now()));
        }
    }

    async fn connect(&self, addr: &str) -> Result<PeerStream, PeerFailure> {
        let unreachable = |e: String| PeerFailure::Unreachable(TransportError::new(e));
        let host = host_of(addr);
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|e| unreachable(e.to_string()))?;
        let connecting = async {
            let target: SocketAddr = tokio::net::lookup_host(addr)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let socket = match target {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            if let Some(source) = self.source {
                socket.bind(SocketAddr::new(source, 0))?;
            }
            let tcp = socket.connect(target).await?;
            // Frames are written whole; Nagle would only hold the last segment back.
            tcp.set_nodelay(true)?;
            self.connector.connect(server_name, tcp).await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(unreachable(format!("{addr}: {e}"))),
            Err(_) => Err(unreachable(format!("{addr}: connect timed out"))),
        }
    }

    /// A call to the leader, in a future that owns everything it uses, as `LeaderCalls`
    /// futures must.
    fn call_leader<B, T>(self: &Arc<Self>, leader: NodeInfo, kind: Kind, body: B) -> CallFuture<T>
    where
        B: Serialize + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.clone();
        Box::pin(async move {
            client
                .call(&leader.addr, kind, &body, LEADER_CALL_TIMEOUT)
                .await
                .map_err(|e| format!("leader unreachable: {e:?}"))
        })
    }
}

/// `RaftLog` reaches the leader through the pool (`LeaderCalls` is implemented on the `Arc`
/// because each call's future must own a handle to the pool).
pub struct StreamLeaderCalls(pub Arc<StreamClient>);

impl LeaderCalls for StreamLeaderCalls {
    fn propose(&self, leader: NodeInfo, command: Command) -> CallFuture<Response> {
        self.0.call_leader(leader, Kind::Propose, command)
    }

    fn read_index(&self, leader: NodeInfo) -> CallFuture<Option<LogId>> {
        self.0.call_leader(leader, Kind::ReadIndex, ())
    }
}

/// Whether the peer has closed an idle pooled stream (or sent anything on it, which on an idle
/// stream only a peer closing it does). A peer that restarted leaves every stream to its old
/// process like this; used, each would fail one call. That cost elections: a leader's
/// replication to a restarted node went through its stale streams one failed heartbeat at a
/// time, long enough for the node to time out and call an election, and a candidate's vote
/// request on a stale stream failed outright. Reads nothing from a live idle stream.
fn peer_closed(stream: &PeerStream) -> bool {
    let (tcp, _) = stream.get_ref();
    let mut byte = [0u8; 1];
    match tcp.try_read(&mut byte) {
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        // End of stream, or a TLS alert (close_notify).
        Ok(_) => true,
    }
}

fn network(e: FrameError) -> PeerFailure {
    PeerFailure::Network(TransportError::new(e.to_string()))
}

/// The host part of `host:port`, `[v6]:port` or a bare host: what the peer's certificate
/// must name.
fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// rustls client configuration for node-to-node streams: this node's certificate, and only
/// the cluster CA trusted.
fn client_tls(tls: &PeerTls) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        let cert = cert.map_err(|e| format!("cluster CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("cluster CA: {e}"))?;
    }
    let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("node certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| format!("node key: {e}"))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("node identity: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_is_what_the_certificate_must_name() {
        assert_eq!(host_of("127.0.0.1:7440"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7440"), "::1");
        assert_eq!(host_of("node-1.example:7440"), "node-1.example");
        assert_eq!(host_of("node-1.example"), "node-1.example");
    }
}
