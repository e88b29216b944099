//! `keystead serve --config FILE`: the TOML configuration.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! data_dir = "/var/lib/keystead"
//! base_domain = "vault.example.com"        # vaults at <name>.vault.example.com
//! authority_url = "https://vault.example.com:8443"  # optional; default https://localhost:<port>
//! throttle = "azure"                        # optional: Azure's per-vault limits (429 + Retry-After)
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
//! [region]                                  # optional: one region of a multi-region deployment
//! name = "east"
//! listen = "10.0.0.1:7441"                  # region listener (mutual TLS, deployment CA)
//! ca = "/etc/keystead/cluster-ca.pem"
//! initial_primary = "east"
//! witness = "10.9.0.1:7900"                 # optional; required by failover = "promote"
//! failover = "read-only"                    # manual | read-only | promote
//! failover_after_ms = 10000                 # promote: after this long without the primary
//! lease_ms = 2000                           # primary's write lease (with a witness)
//! failback = "manual"                       # manual | automatic
//! [[region.peers]]
//! name = "west"
//! addrs = ["10.1.0.1:7441", "10.1.0.2:7441"]
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
    /// Per-vault service limits, answered 429 + Retry-After: `"azure"`, or
    /// `"secret_create=N,key_create=N,other=N"` per 10 seconds. Default: no throttling.
    pub throttle: Option<String>,
    pub tls: Option<TlsConfig>,
    pub kek: KekConfig,
    pub cluster: Option<ClusterConfig>,
    pub region: Option<RegionConfig>,
}

/// `[region]`: this node's region in a multi-region deployment (see `keystead_region`).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// The region listener (mutual TLS with the deployment CA).
    pub listen: SocketAddr,
    pub ca: PathBuf,
    /// The primary region on first start (and the one automatic failback returns to).
    pub initial_primary: String,
    pub witness: Option<String>,
    #[serde(default = "default_failover")]
    pub failover: keystead_region::FailoverPolicy,
    #[serde(default = "default_failover_after_ms")]
    pub failover_after_ms: u64,
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    #[serde(default = "default_failback")]
    pub failback: keystead_region::Failback,
    pub source_ip: Option<std::net::IpAddr>,
    /// Stream entries the primary keeps for secondaries (fixed at first start).
    #[serde(default = "default_outbox_keep")]
    pub outbox_keep: u64,
    pub peers: Vec<keystead_region::PeerRegion>,
}

fn default_outbox_keep() -> u64 {
    100_000
}

fn default_failover() -> keystead_region::FailoverPolicy {
    keystead_region::FailoverPolicy::ReadOnly
}

fn default_failover_after_ms() -> u64 {
    10_000
}

fn default_lease_ms() -> u64 {
    2_000
}

fn default_failback() -> keystead_region::Failback {
    keystead_region::Failback::Manual
}

impl RegionConfig {
    pub fn settings(&self) -> keystead_region::RegionSettings {
        keystead_region::RegionSettings {
            name: self.name.clone(),
            listen: self.listen,
            initial_primary: self.initial_primary.clone(),
            peers: self.peers.clone(),
            witness: self.witness.clone(),
            failover: self.failover,
            failover_after: std::time::Duration::from_millis(self.failover_after_ms),
            lease: std::time::Duration::from_millis(self.lease_ms),
            failback: self.failback,
            source_ip: self.source_ip,
            outbox_keep: self.outbox_keep,
        }
    }
}

/// `keystead witness --config FILE`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    pub listen: SocketAddr,
    pub state_file: PathBuf,
    pub ca: PathBuf,
    pub tls: TlsConfig,
    pub kek: KekConfig,
    /// After a restart, refuse promotions this long (>= the longest lease).
    #[serde(default = "default_restart_grace_ms")]
    pub restart_grace_ms: u64,
}

fn default_restart_grace_ms() -> u64 {
    10_000
}

impl WitnessConfig {
    pub fn load(path: &Path) -> Result<WitnessConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
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
    /// The leader answers linearizable reads from its lease while a quorum of followers is
    /// bound not to elect another leader (0.8 × the maximum election timeout after their last
    /// acknowledgement), instead of a heartbeat round per read batch. Every node must use the
    /// same `election_timeout_ms`. `false` takes a heartbeat round every time.
    #[serde(default = "default_true")]
    pub lease_reads: bool,
    /// The leader sends new entries to the followers as its own log append starts
    /// (`keystead_replication::early_append`), so their fsyncs run beside its own: a lone
    /// write waits for one fsync's time instead of two. `false` leaves replication to openraft
    /// alone (after the leader's fsync).
    #[serde(default = "default_true")]
    pub early_appends: bool,
}

fn default_true() -> bool {
    true
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
