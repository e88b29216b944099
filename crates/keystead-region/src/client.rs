//! Calls to other regions and the witness: JSON over HTTPS with this node's certificate,
//! trusting only the deployment CA (the same transport as the zone cluster's).

use keystead_replication::network::{PeerClient, PeerFailure};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Why no address of a region answered.
#[derive(Debug)]
pub enum CallError {
    /// No connection could be made to any address: the request surely did not arrive.
    Unreachable(String),
    /// A connection was made but no answer decoded: the request may have been acted on.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) => write!(f, "unreachable: {m}"),
            CallError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

#[derive(Clone)]
pub struct RegionClient {
    peers: PeerClient,
}

impl RegionClient {
    pub fn new(peers: PeerClient) -> RegionClient {
        RegionClient { peers }
    }

    /// Tries `addrs` in order until one answers; `accept` may reject an answer (e.g. a
    /// follower that cannot grant a lease) so the next address is tried.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        addrs: &[String],
        path: &str,
        body: &B,
        timeout: Duration,
        accept: impl Fn(&R) -> bool,
    ) -> Result<R, CallError> {
        let mut last: Option<CallError> = None;
        let mut fallback: Option<R> = None;
        for addr in addrs {
            match self.peers.post::<B, R>(addr, path, body, timeout).await {
                Ok(answer) if accept(&answer) => return Ok(answer),
                Ok(answer) => fallback = Some(answer),
                Err(PeerFailure::Unreachable(e)) => {
                    if !matches!(last, Some(CallError::Failed(_))) {
                        last = Some(CallError::Unreachable(format!("{addr}: {e}")));
                    }
                }
                Err(PeerFailure::Network(e)) => {
                    last = Some(CallError::Failed(format!("{addr}: {e}")))
                }
            }
        }
        match fallback {
            Some(answer) => Ok(answer),
            None => Err(last.unwrap_or_else(|| CallError::Unreachable("no addresses".into()))),
        }
    }

    /// [`RegionClient::call`] accepting the first answer.
    pub async fn first<B: Serialize, R: DeserializeOwned>(
        &self,
        addrs: &[String],
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, CallError> {
        self.call(addrs, path, body, timeout, |_| true).await
    }
}
