//! Starting a node and serving it over HTTPS: opens the store, writes the admin credential on
//! first start, runs the retention timer and the listener until SIGINT/SIGTERM.

use crate::config::{ClusterConfig, ServeConfig};
use crate::files::write_atomic;
use crate::tls::{self, TlsMaterial};
use keystead_api::{ApiConfig, AppState};
use keystead_core::cluster::ClusterAdmin;
use keystead_core::region::RegionControl;
use keystead_core::{Bootstrap, CommandLog, LocalLog, Node, NodeConfig, SystemClock};
use keystead_crypto::Kek;
use keystead_region::{RegionHandle, RegionLog};
use keystead_replication::types::NodeInfo;
use keystead_replication::{ClusterNode, ClusterSettings, PeerTls};
use keystead_store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything needed to run a listener for an opened node.
pub struct Listener {
    pub listen: SocketAddr,
    /// Serve possibly stale local reads when no leader is reachable.
    pub allow_stale_reads: bool,
    pub base_domain: String,
    pub authority_url: Option<String>,
    /// Per-vault service limits (429 + Retry-After); none: no throttling.
    pub throttle: Option<keystead_api::ThrottleLimits>,
    pub tls: TlsMaterial,
}

/// The throttle limits a `spec` (from the setting or flag `what`) names, if any.
pub fn throttle_limits(
    spec: Option<&str>,
    what: &str,
) -> Result<Option<keystead_api::ThrottleLimits>, String> {
    spec.map(keystead_api::ThrottleLimits::parse)
        .transpose()
        .map_err(|e| format!("{what}: {e}"))
}

/// Opens the node in `data_dir` (single-node log).
pub async fn open_node(data_dir: &Path, kek: Kek) -> Result<(Arc<Node>, Bootstrap), String> {
    let clock = Arc::new(SystemClock::default());
    let (node, bootstrap) = Node::open_single(NodeConfig::new(data_dir.to_path_buf()), kek, clock)
        .await
        .map_err(|e| format!("opening the store in {}: {e}", data_dir.display()))?;
    Ok((Arc::new(node), bootstrap))
}

/// On first start, writes `admin.json` (endpoint, admin token, CA) for the admin CLI. The
/// token exists nowhere else in plaintext; the store keeps only its hash.
pub fn write_admin_file(
    data_dir: &Path,
    bootstrap: &Bootstrap,
    endpoint: &str,
    ca_cert: Option<&PathBuf>,
) -> Result<(), String> {
    let Some(token) = &bootstrap.admin_token else {
        return Ok(());
    };
    let ca = ca_cert.map(|p| absolute(p).display().to_string());
    let body = serde_json::json!({"endpoint": endpoint, "token": token.as_str(), "ca_cert": ca});
    let text =
        zeroize::Zeroizing::new(serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?);
    write_atomic(&data_dir.join("admin.json"), &text, true)
}

pub fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Serves `node` until a shutdown signal. `on_listening` runs once the socket is bound.
pub async fn run(
    node: Arc<Node>,
    cluster: Option<Arc<dyn ClusterAdmin>>,
    region: Option<Arc<dyn RegionControl>>,
    listener: Listener,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(
        listener.tls.cert_pem.clone().into_bytes(),
        listener.tls.key_pem.as_bytes().to_vec(),
    )
    .await
    .map_err(|e| format!("TLS configuration: {e}"))?;
    let state = AppState {
        node: node.clone(),
        config: Arc::new(ApiConfig {
            base_domain: listener.base_domain.clone(),
            authority_url: listener.authority_url.clone(),
            allow_stale_reads: listener.allow_stale_reads,
        }),
        throttle: listener
            .throttle
            .map(|limits| Arc::new(keystead_api::Throttle::new(limits))),
        cluster,
        region,
    };
    let app = keystead_api::app(state);
    let handle = axum_server::Handle::new();
    let retention = tokio::spawn(keystead_core::retention::run(
        node.clone(),
        Duration::from_secs(60),
    ));
    let rotation = tokio::spawn(keystead_core::rotation::run(
        node.clone(),
        Duration::from_secs(60),
    ));
    let shutdown = handle.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let waiter = handle.clone();
    let server = tokio::spawn(
        axum_server::bind_rustls(listener.listen, rustls)
            .handle(handle)
            .serve(app.into_make_service()),
    );
    match waiter.listening().await {
        Some(addr) => on_listening(addr),
        None => {
            let detail = match server.await {
                Ok(Err(e)) => e.to_string(),
                _ => "unknown error".into(),
            };
            return Err(format!("cannot listen on {}: {detail}", listener.listen));
        }
    }
    let result = server.await;
    retention.abort();
    rotation.abort();
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("server error: {e}")),
        Err(e) => Err(format!("server task failed: {e}")),
    }
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `keystead serve --config FILE`.
pub async fn serve(config: ServeConfig) -> Result<(), String> {
    let kek = config.kek.load()?;
    let replicated = config.cluster.is_some() || config.region.is_some();
    let tls = match &config.tls {
        Some(files) => tls::load_files(&files.cert, &files.key, &kek)?,
        None if replicated => {
            return Err("[cluster] and [region] need [tls] with a certificate from the deployment CA (see `keystead cluster init` / `keystead geo init`)".into())
        }
        None => tls::load_or_create(&config.data_dir, &kek, &config.base_domain)?,
    };
    let opened = if replicated {
        open_replicated(&config, kek, &tls).await?
    } else {
        let (node, bootstrap) = open_node(&config.data_dir, kek).await?;
        Opened {
            node,
            bootstrap,
            cluster: None,
            region: None,
        }
    };
    let endpoint = config
        .authority_url
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{}", config.listen.port()));
    let ca_cert = tls
        .ca_cert_path
        .clone()
        .or_else(|| config.cluster.as_ref().map(|c| c.ca.clone()))
        .or_else(|| config.region.as_ref().map(|r| r.ca.clone()));
    write_admin_file(
        &config.data_dir,
        &opened.bootstrap,
        &endpoint,
        ca_cert.as_ref(),
    )?;
    let listener = Listener {
        listen: config.listen,
        allow_stale_reads: config.cluster.as_ref().is_some_and(|c| c.stale_reads),
        base_domain: config.base_domain.clone(),
        authority_url: config.authority_url.clone(),
        throttle: throttle_limits(config.throttle.as_deref(), "throttle")?,
        tls,
    };
    run(
        opened.node,
        opened.cluster,
        opened.region,
        listener,
        |addr| {
            tracing::info!(%addr, "keystead serving");
        },
    )
    .await
}

/// A node opened over a replicated log, with what the admin API needs to manage it.
struct Opened {
    node: Arc<Node>,
    bootstrap: Bootstrap,
    cluster: Option<Arc<dyn ClusterAdmin>>,
    region: Option<Arc<dyn RegionControl>>,
}

/// The region's own log: a Raft member (`[cluster]`) or the single-node log.
struct RegionMember {
    log: Arc<dyn CommandLog>,
    is_leader: keystead_region::LeaderCheck,
    cluster: Option<Arc<dyn ClusterAdmin>>,
    /// This node creates the region's first state (the cluster's bootstrap node, or a single
    /// node); the others receive it.
    bootstraps: bool,
}

/// Opens a node of a cluster and/or of a multi-region deployment: starts the Raft member (if
/// any), the region runtime (if any), waits until the deployment exists in the local state
/// (created by the bootstrap node of the primary region; others receive it by replication),
/// then opens the node over the resulting log.
async fn open_replicated(
    config: &ServeConfig,
    kek: Kek,
    tls: &TlsMaterial,
) -> Result<Opened, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
    let store = Arc::new(
        Store::open(&config.data_dir.join("keystead.redb"))
            .map_err(|e| format!("opening the store: {e}"))?,
    );
    let ca_path = config
        .cluster
        .as_ref()
        .map(|c| c.ca.clone())
        .or_else(|| config.region.as_ref().map(|r| r.ca.clone()))
        .ok_or("no CA configured")?;
    let ca_pem =
        std::fs::read(&ca_path).map_err(|e| format!("reading {}: {e}", ca_path.display()))?;
    let peer_tls = PeerTls {
        ca_pem,
        cert_pem: tls.cert_pem.clone().into_bytes(),
        key_pem: zeroize::Zeroizing::new(tls.key_pem.as_bytes().to_vec()),
    };
    let member = match &config.cluster {
        Some(cluster) => start_cluster_member(config, cluster, store.clone(), &peer_tls).await?,
        None => RegionMember {
            log: Arc::new(LocalLog::new(store.clone())),
            is_leader: Box::new(|| true),
            cluster: None,
            bootstraps: true,
        },
    };
    let mut wait_for_deployment = !member.bootstraps;
    let member_is_clustered = member.cluster.is_some();
    let (log, region): (Arc<dyn CommandLog>, Option<Arc<dyn RegionControl>>) = match &config.region
    {
        None => (member.log, None),
        Some(region_config) => {
            wait_for_deployment |= region_config.initial_primary != region_config.name;
            let region = keystead_region::start(
                region_config.settings(),
                store.clone(),
                member.log,
                &peer_tls,
                member.is_leader,
                member.bootstraps,
            )
            .await?;
            (
                Arc::new(RegionLog::new(region.clone())),
                Some(Arc::new(RegionHandle(region))),
            )
        }
    };
    if wait_for_deployment {
        let mut waited = 0u64;
        while store
            .read()
            .and_then(|r| r.deployment())
            .map_err(|e| e.to_string())?
            .is_none()
        {
            if waited.is_multiple_of(50) {
                tracing::info!(
                    "waiting for the deployment to arrive (cluster join, or replication from the primary region)"
                );
            }
            waited += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The first write of a new primary may wait for its region lease (the peers may still be
    // starting): retry for a while.
    let mut attempt = 0;
    let (node, bootstrap) = loop {
        let clock = Arc::new(SystemClock::default());
        match Node::open(
            NodeConfig::new(config.data_dir.clone()),
            store.clone(),
            log.clone(),
            kek.clone(),
            clock,
        )
        .await
        {
            Ok(opened) => break opened,
            // A cluster member restarted before its peers has no leader to read or write
            // through yet; a region's new primary may wait for its lease. Wait for them.
            Err(e) if attempt < 60 && (region.is_some() || member_is_clustered) => {
                attempt += 1;
                tracing::info!(error = %e, "opening the node; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(format!("opening the node: {e}")),
        }
    };
    Ok(Opened {
        node: Arc::new(node),
        bootstrap,
        cluster: member.cluster,
        region,
    })
}

async fn start_cluster_member(
    config: &ServeConfig,
    cluster: &ClusterConfig,
    store: Arc<Store>,
    peer_tls: &PeerTls,
) -> Result<RegionMember, String> {
    let settings = ClusterSettings {
        node_id: cluster.node_id,
        listen: cluster.listen,
        info: NodeInfo {
            addr: cluster
                .advertise
                .clone()
                .unwrap_or_else(|| cluster.listen.to_string()),
            api_addr: cluster
                .api_advertise
                .clone()
                .unwrap_or_else(|| config.listen.to_string()),
            zone: cluster.zone.clone(),
            region: cluster.region.clone(),
        },
        bootstrap: cluster.bootstrap,
        heartbeat_ms: cluster.heartbeat_ms,
        election_timeout_ms: (
            cluster.election_timeout_ms[0],
            cluster.election_timeout_ms[1],
        ),
        source_ip: cluster.source_ip,
        snapshot_logs: cluster.snapshot_logs,
        lease_reads: cluster.lease_reads,
        early_appends: cluster.early_appends,
    };
    let log_file = keystead_replication::open_log_file(&config.data_dir, &store)?;
    let member = ClusterNode::start(settings, store, log_file, peer_tls.clone()).await?;
    let leader = member.clone();
    Ok(RegionMember {
        log: member.log.clone(),
        is_leader: Box::new(move || leader.is_leader()),
        cluster: Some(member as Arc<dyn ClusterAdmin>),
        bootstraps: cluster.bootstrap,
    })
}
