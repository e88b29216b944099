//! `keystead serve --config FILE`: the TOML configuration.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! data_dir = "/var/lib/keystead"
//! base_domain = "vault.example.com"        # vaults at <name>.vault.example.com
//! authority_url = "https://vault.example.com:8443"  # optional; default https://localhost:<port>
//! [tls]                                     # optional; default: a local CA in data_dir
//! cert = "/etc/keystead/tls.pem"
//! key = "/etc/keystead/tls-key.pem"
//! [kek]                                     # exactly one of:
//! file = "/etc/keystead/kek"                #   base64 of 32 bytes (created if missing)
//! env = "KEYSTEAD_KEK"                      #   base64 of 32 bytes in this variable
//! [cluster]                                 # optional: run as one node of a Raft cluster
//! node_id = 1
//! listen = "10.0.0.1:9441"                  # node-to-node listener (mutual TLS)
//! advertise = "10.0.0.1:9441"               # default: listen
//! api_advertise = "10.0.0.1:8443"           # default: the top-level listen
//! zone = "zone-1"
//! region = "region-1"
//! ca = "/etc/keystead/cluster-ca.pem"       # peers must present certificates from this CA
//! bootstrap = true                          # only on the first node: initialize the cluster
//! ```
//!
//! In cluster mode `[tls]` is required: the same certificate (issued by the cluster CA, see
//! `keystead cluster init`) serves clients and authenticates the node to its peers. The key
//! file may be PEM or sealed under the KEK.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    #[serde(default = "default_base_domain")]
    pub base_domain: String,
    pub authority_url: Option<String>,
    pub tls: Option<TlsConfig>,
    pub kek: KekConfig,
    pub cluster: Option<ClusterConfig>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub api_advertise: Option<String>,
    pub zone: String,
    #[serde(default)]
    pub region: String,
    pub ca: PathBuf,
    #[serde(default)]
    pub bootstrap: bool,
    /// Raft heartbeat, ms. openraft 0.9 lets a follower start an election only after the leader
    /// lease (= the maximum election timeout) plus an election timeout without heartbeats, so
    /// failover takes roughly `max + [min, max]`: 200-400 ms gives ~0.6-0.8 s (measured median
    /// 0.76 s on a loaded 2-core machine, docs/benchmarks.md). Raise both on slow networks.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: [u64; 2],
    /// Local address for outgoing connections to peers (multi-homed hosts).
    pub source_ip: Option<std::net::IpAddr>,
    /// Serve reads from local, possibly stale state while no leader is reachable (marked with
    /// `x-keystead-stale-read: true`). Off by default: reads are linearizable.
    #[serde(default)]
    pub stale_reads: bool,
    /// Take a snapshot (and compact the log) after this many entries.
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
}

fn default_snapshot_logs() -> u64 {
    5_000
}

fn default_heartbeat_ms() -> u64 {
    50
}

fn default_election_timeout_ms() -> [u64; 2] {
    [200, 400]
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct KekConfig {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

fn default_base_domain() -> String {
    "vault.localhost".into()
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<ServeConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl KekConfig {
    pub fn load(&self) -> Result<keystead_crypto::Kek, String> {
        match (&self.file, &self.env) {
            (Some(file), None) => keystead_crypto::Kek::load_or_create_file(file)
                .map_err(|e| format!("KEK file {}: {e}", file.display())),
            (None, Some(var)) => {
                let value =
                    std::env::var(var).map_err(|_| format!("KEK variable {var} is not set"))?;
                keystead_crypto::Kek::from_base64(&value).map_err(|e| format!("KEK in {var}: {e}"))
            }
            _ => Err("[kek] needs exactly one of `file` or `env`".into()),
        }
    }
}
