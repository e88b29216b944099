//! The simulation's node transport: openraft's RPCs, client writes and client reads as
//! length-prefixed JSON
//! frames over turmoil's simulated TCP, one connection per call (a call cut off by a partition
//! or a crash then simply times out, and no stream is left half-read). The production transport
//! (`network.rs`, mTLS over real sockets) cannot run inside the simulation; this one carries the
//! same openraft messages.

use keystead_core::{CommandLog, CoreError};
use keystead_model::{Command, ObjectKind, ObjectName};
use keystead_replication::early_append::{EarlyOutcome, EarlySend, EarlySender};
use keystead_replication::leader_calls::{CallFuture, LeaderCalls};
use keystead_replication::leader_lease::LeaderLease;
use keystead_replication::peer::PeerAnswer;
use keystead_replication::raft_log::RaftLog;
use keystead_replication::types::{Raft, Response};
use keystead_replication::write_batch::WriteBatcher;
use keystead_replication::{NodeInfo, TypeConfig};
use keystead_store::Store;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

/// Where every node listens.
pub const PORT: u16 = 7000;
/// A frame larger than this is refused (a snapshot chunk is far smaller).
const MAX_FRAME: u32 = 16 << 20;
/// How long a leader may take to commit a client's write before the client is told "unknown".
const WRITE_WAIT: Duration = Duration::from_secs(2);
/// How long a node may take to answer a write it forwards (less than the client's wait).
const FORWARD_WAIT: Duration = Duration::from_millis(2500);
/// How long a read may take (read index, then waiting for it to be applied).
const READ_WAIT: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    Write(Command),
    /// A write sent to any node, which hands it to production's `RaftLog::propose`: appended
    /// here when this node leads, else forwarded to the leader (over the sim network, by
    /// `SimLeaderCalls`), with `RaftLog`'s retries while no leader is known.
    Forward(Command),
    /// The latest version of a secret in the workload's vault, read linearizably.
    Read(ObjectName),
    /// A follower asking the leader for a read index (production: a `ReadIndex` frame, `frame.rs`).
    ReadIndex,
}

/// A node's answer to a client's read.
#[derive(Debug, Serialize, Deserialize)]
pub enum ReadAnswer {
    /// The secret's latest version id (none: no such secret yet), and how it was read.
    Done(Option<String>, ReadTrace),
    Failed(String),
}

/// A node's answer to a client's write (as the production `PeerAnswer` for forwarded writes).
#[derive(Debug, Serialize, Deserialize)]
pub enum WriteAnswer {
    /// Committed and applied: what applying it returned.
    Done(Box<Response>),
    /// Not appended here (not the leader, or the entry was truncated); the leader if known.
    NotLeader(Option<u64>),
    /// The outcome is unknown (no commit in time, or the node is failing).
    Failed(String),
}

/// Why a call failed: before the request was sent (it certainly had no effect) or after.
#[derive(Debug)]
pub enum CallError {
    NotSent(io::Error),
    Lost(io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, NodeInfo, E> {
        match self {
            CallError::NotSent(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Lost(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

/// `RaftLog`'s calls to the leader over the simulation's transport.
pub struct SimLeaderCalls;

impl LeaderCalls for SimLeaderCalls {
    fn propose(&self, leader: NodeInfo, command: Command) -> CallFuture<Response> {
        Box::pin(async move {
            let answer = call(&leader.addr, &Request::Write(command), WRITE_WAIT)
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok(match answer {
                WriteAnswer::Done(response) => PeerAnswer::Done(*response),
                WriteAnswer::NotLeader(_) => PeerAnswer::NotLeader(None),
                WriteAnswer::Failed(e) => PeerAnswer::Failed(e),
            })
        })
    }

    fn read_index(
        &self,
        leader: NodeInfo,
    ) -> CallFuture<Option<keystead_replication::types::LogId>> {
        Box::pin(async move {
            call(&leader.addr, &Request::ReadIndex, READ_WAIT)
                .await
                .map_err(|e| format!("{e:?}"))
        })
    }
}

/// Sends `request` to `host` and decodes its answer, within `ttl`.
pub async fn call<T: DeserializeOwned>(
    host: &str,
    request: &Request,
    ttl: Duration,
) -> Result<T, CallError> {
    let deadline = tokio::time::Instant::now() + ttl;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timed out");
    let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect((host, PORT)))
        .await
        .map_err(|_| CallError::NotSent(timed_out()))?
        .map_err(CallError::NotSent)?;
    let exchange = async {
        write_frame(&mut stream, request).await?;
        let bytes = read_frame(&mut stream).await?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| CallError::Lost(timed_out()))?
        .map_err(CallError::Lost)
}

/// One frame: a big-endian `u32` length, then JSON, written in a single write.
async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

async fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u32().await?;
    if len > MAX_FRAME {
        return Err(io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut body = vec![0; len as usize];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Counts, across a whole run, of the transport's deliveries worth showing.
#[derive(Default)]
pub struct NetStats {
    /// Snapshot chunks that completed an install on the receiving node.
    pub snapshots_installed: AtomicU64,
    /// Writes a follower forwarded to the leader and answered as applied.
    pub forwarded_writes: AtomicU64,
}

/// How a read was answered, for the failure message of a read found not linearizable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadTrace {
    pub node: u64,
    pub term: u64,
    pub index: Option<keystead_replication::types::LogId>,
    /// The leader asked for the read index, when this node followed.
    pub via_leader: Option<u64>,
    /// Whether the leader lease answered a read index on this node meanwhile (it answered this
    /// read's, unless a concurrent read's).
    pub lease: bool,
    pub applied: Option<keystead_replication::types::LogId>,
    /// The last index applied in the state the read saw, and the secret's version count there.
    pub store_applied: u64,
    pub versions: u64,
}

/// What a node's listener serves with.
#[derive(Clone)]
pub struct Served {
    pub raft: Raft,
    pub writes: Arc<WriteBatcher>,
    pub lease: Arc<LeaderLease>,
    pub store: Arc<Store>,
    pub stats: Arc<NetStats>,
    /// The production `CommandLog` over Raft, for reads.
    pub log: Arc<RaftLog>,
}

/// Serves the node's listener: each connection carries one request and its answer.
pub async fn serve(listener: TcpListener, served: Served) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let served = served.clone();
        tokio::spawn(async move {
            // A failed exchange is the caller's timeout to notice.
            let _ = answer(stream, served).await;
        });
    }
}

/// A linearizable read as production makes it, through `RaftLog` itself: a read index from a
/// round shared with this node's other readers (asked of the leader over the network when this
/// node follows, where it joins the leader's own shared round), then the local state once this
/// node has applied that far.
async fn read(served: &Served, name: &ObjectName) -> ReadAnswer {
    let (lease_before, _) = served.lease.counts();
    let leader = {
        let metrics = served.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .current_leader
            .filter(|leader| *leader != metrics.id)
    };
    let index = match served.log.read_index_applied().await {
        Ok(index) => index,
        Err(e) => return ReadAnswer::Failed(e.to_string()),
    };
    let vault = crate::workload::vault();
    let seen = served.store.read().and_then(|view| {
        let record = view.object(&vault, ObjectKind::Secret, name)?;
        Ok((record, view.last_applied()?))
    });
    let (record, store_applied) = match seen {
        Ok((record, applied)) => (Ok(record), applied),
        Err(e) => (Err(e), 0),
    };
    let trace = {
        let metrics = served.raft.metrics();
        let metrics = metrics.borrow();
        ReadTrace {
            node: metrics.id,
            term: metrics.current_term,
            index,
            via_leader: leader,
            lease: served.lease.counts().0 > lease_before,
            applied: metrics.last_applied,
            store_applied,
            versions: match &record {
                Ok(Some(r)) => r.version_count,
                _ => 0,
            },
        }
    };
    match record {
        Ok(record) => ReadAnswer::Done(record.map(|r| r.latest_version().to_string()), trace),
        Err(e) => ReadAnswer::Failed(e.to_string()),
    }
}

async fn answer(mut stream: TcpStream, served: Served) -> io::Result<()> {
    let Served {
        raft,
        writes,
        stats,
        ..
    } = served.clone();
    let bytes = read_frame(&mut stream).await?;
    let request: Request = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    match request {
        Request::Append(rpc) => write_frame(&mut stream, &raft.append_entries(rpc).await).await,
        Request::Vote(rpc) => write_frame(&mut stream, &raft.vote(rpc).await).await,
        Request::Snapshot(rpc) => {
            let done = rpc.done;
            let result = raft.install_snapshot(rpc).await;
            if done && result.is_ok() {
                stats.snapshots_installed.fetch_add(1, Ordering::Relaxed);
            }
            write_frame(&mut stream, &result).await
        }
        Request::Write(command) => {
            // Through the production write batcher: concurrent writes share entries.
            let answer = match tokio::time::timeout(WRITE_WAIT, writes.propose(command)).await {
                Ok(PeerAnswer::Done(response)) => WriteAnswer::Done(Box::new(response)),
                Ok(PeerAnswer::NotLeader(_)) => {
                    WriteAnswer::NotLeader(raft.metrics().borrow().current_leader)
                }
                Ok(PeerAnswer::Failed(e)) => WriteAnswer::Failed(e),
                Err(_) => WriteAnswer::Failed("not committed in time".into()),
            };
            write_frame(&mut stream, &answer).await
        }
        Request::Forward(command) => {
            let follows = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow();
                metrics.current_leader != Some(metrics.id)
            };
            let answer = match tokio::time::timeout(FORWARD_WAIT, served.log.propose(command)).await
            {
                Ok(Ok(applied)) => {
                    if follows {
                        stats.forwarded_writes.fetch_add(1, Ordering::Relaxed);
                    }
                    WriteAnswer::Done(Box::new(Response(Some(Ok(applied)))))
                }
                Ok(Err(CoreError::Refused(refusal))) => {
                    WriteAnswer::Done(Box::new(Response(Some(Err(refusal)))))
                }
                Ok(Err(e)) => WriteAnswer::Failed(e.to_string()),
                Err(_) => WriteAnswer::Failed("not answered in time".into()),
            };
            write_frame(&mut stream, &answer).await
        }
        Request::ReadIndex => {
            let answer = served.log.serve_read_index().await;
            write_frame(&mut stream, &answer).await
        }
        Request::Read(name) => {
            let answer = match tokio::time::timeout(READ_WAIT, read(&served, &name)).await {
                Ok(answer) => answer,
                Err(_) => ReadAnswer::Failed("no read index in time".into()),
            };
            write_frame(&mut stream, &answer).await
        }
    }
}

/// openraft's network factory: a connection per target node, addressed by its host name,
/// reporting followers' acknowledgements to this node's leader lease as production does.
pub struct Network {
    pub lease: Arc<LeaderLease>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Connection {
        Connection {
            target,
            node: node.clone(),
            lease: self.lease.clone(),
        }
    }
}

pub struct Connection {
    target: u64,
    node: NodeInfo,
    lease: Arc<LeaderLease>,
}

impl Connection {
    async fn rpc<T: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> Result<T, RPCError<u64, NodeInfo, RaftError<u64, E>>> {
        let answer: Result<T, RaftError<u64, E>> =
            call(&self.node.addr, &request, option.hard_ttl())
                .await
                .map_err(CallError::into_rpc)?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// Every append-entries request a node sends, whatever its term: its entries follow its
/// previous entry, one index after another. A receiver checks this (openraft asserts) only for
/// requests whose vote it accepts, so a malformed request under an old term would mostly go
/// unnoticed there; checked here, a panic fails the seed (a leader reading its log across a
/// purge sent such requests, `docs/simulation.md`, "Found").
fn assert_entries_follow(request: &AppendEntriesRequest<TypeConfig>, sender: &str) {
    let first = request.prev_log_id.map_or(0, |prev| prev.index + 1);
    let indexes: Vec<u64> = request.entries.iter().map(|e| e.log_id.index).collect();
    assert!(
        indexes
            .iter()
            .copied()
            .eq(first..first + indexes.len() as u64),
        "{sender} sent entries {indexes:?} after previous entry {:?}",
        request.prev_log_id
    );
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        assert_entries_follow(&rpc, "replication");
        // As `network.rs`: the send time is read before the request leaves.
        let sent = tokio::time::Instant::now();
        let vote = rpc.vote;
        let response = self.rpc(Request::Append(rpc), &option).await?;
        if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
            self.lease.acknowledged(self.target, &vote, sent);
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
        self.rpc(Request::Snapshot(rpc), &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        self.rpc(Request::Vote(rpc), &option).await
    }
}

/// Early appends (`early_append.rs`) over the simulation's transport, as production sends them
/// over its own.
pub struct SimEarlySender;

impl EarlySender for SimEarlySender {
    fn send(&self, node: &NodeInfo, request: AppendEntriesRequest<TypeConfig>) -> EarlySend {
        assert_entries_follow(&request, "early append");
        let addr = node.addr.clone();
        Box::pin(async move {
            let answer: Result<Result<AppendEntriesResponse<u64>, RaftError<u64>>, CallError> =
                call(&addr, &Request::Append(request), Duration::from_millis(500)).await;
            EarlyOutcome::of_answer(answer)
        })
    }
}
