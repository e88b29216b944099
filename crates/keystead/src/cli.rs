//! Command-line interface: argument definitions and dispatch.

use crate::admin_client::AdminClient;
use crate::{config, dev, server};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "keystead",
    version,
    about = "A self-hosted, Azure Key Vault-compatible key vault"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a single-node vault for development: local CA, a `demo` vault and a service
    /// principal, created on first start.
    Dev(DevArgs),
    /// Start the server from a TOML config file.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage vaults (through the admin API of a running server).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Manage service principals.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Manage role assignments.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Create and manage a zone-redundant cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Regions of a multi-region deployment: status, switchover, failover, divergence.
    #[command(subcommand)]
    Region(RegionCommand),
    /// Generate a multi-region deployment's keys, certificates and configs.
    #[command(subcommand)]
    Geo(GeoCommand),
    /// Run the deployment's witness (a third party in failover decisions).
    Witness {
        #[arg(long)]
        config: PathBuf,
    },
    /// Demonstrations that start everything on this machine.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Subcommand)]
enum RegionCommand {
    /// Each region's role, epoch, position and replication lag, and the witness.
    Status {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Planned switchover: fence the primary, catch TO up, promote it. Loses nothing.
    Switchover {
        #[arg(long)]
        to: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Promote TO at its current position. Writes the old primary acknowledged but did not
    /// replicate become a divergence record on the old primary when it returns.
    Failover {
        #[arg(long)]
        to: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Writes of a superseded primary that never reached its successor.
    #[command(subcommand)]
    Divergence(DivergenceCommand),
}

#[derive(Subcommand)]
enum DivergenceCommand {
    List {
        #[command(flatten)]
        target: AdminTarget,
    },
    Show {
        id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Re-apply the record's writes onto the current primary; conflicts are reported.
    Apply {
        id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    Discard {
        id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(Subcommand)]
enum GeoCommand {
    Init {
        #[arg(long)]
        out: PathBuf,
        /// Region names; the first is the initial primary.
        #[arg(long, default_value = "east,west")]
        regions: String,
        #[arg(long, default_value_t = 3)]
        nodes_per_region: u64,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8441)]
        base_port: u16,
        #[arg(long, default_value = "vault.localhost")]
        base_domain: String,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        witness: bool,
        /// manual | read-only | promote
        #[arg(long, default_value = "read-only")]
        failover: String,
        #[arg(long, default_value_t = 10_000)]
        failover_after_ms: u64,
        #[arg(long, default_value_t = 2_000)]
        lease_ms: u64,
        /// manual | automatic
        #[arg(long, default_value = "manual")]
        failback: String,
        /// More DNS names or IP addresses for every certificate, comma-separated.
        #[arg(long, default_value = "")]
        san: String,
    },
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Two regions of three zones each plus a witness, on this machine.
    Geo {
        #[arg(long, default_value = "./keystead-geo-demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 8441)]
        base_port: u16,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Generate a new cluster offline: shared KEK, cluster CA, node certificates (keys sealed)
    /// and one config per node (node 1 bootstraps). Then `keystead serve --config` each node
    /// and `keystead cluster join` nodes 2..N on node 1.
    Init {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8441)]
        api_base_port: u16,
        #[arg(long, default_value_t = 9441)]
        cluster_base_port: u16,
        /// Comma-separated zones, assigned to nodes round-robin.
        #[arg(long, default_value = "zone-1,zone-2,zone-3")]
        zones: String,
        #[arg(long, default_value = "region-1")]
        region: String,
        #[arg(long, default_value = "vault.localhost")]
        base_domain: String,
    },
    /// Each node's zone, role, term, applied index and lag.
    Status {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Add a running node (learner first, then voter). Send it to the leader.
    Join {
        #[arg(long)]
        node_id: u64,
        /// The node's cluster address, host:port.
        #[arg(long)]
        addr: String,
        /// The node's client API address, host:port.
        #[arg(long)]
        api_addr: String,
        #[arg(long)]
        zone: String,
        #[arg(long, default_value = "")]
        region: String,
        /// Accept a layout in which one zone holds a voting majority.
        #[arg(long)]
        allow_unsafe_layout: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Remove a node from the cluster.
    Remove {
        node_id: u64,
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(Args)]
pub struct DevArgs {
    /// Where the database, keys and generated credentials live.
    #[arg(long, default_value = "./keystead-data", env = "KEYSTEAD_DATA_DIR")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Vaults are served at `<vault>.<base-domain>:<port>`.
    #[arg(long, default_value = "vault.localhost")]
    pub base_domain: String,
    /// Key Vault's per-vault service limits, answered 429 + Retry-After: `azure` (Azure's
    /// published limits), or `secret_create=N,key_create=N,other=N` per 10 seconds (classes
    /// not named are unlimited). Default: no throttling.
    #[arg(long)]
    pub throttle: Option<String>,
}

/// Where the admin CLI finds the server: `<data-dir>/admin.json`, or explicit overrides.
#[derive(Args, Clone)]
pub struct AdminTarget {
    #[arg(
        long,
        global = true,
        default_value = "./keystead-data",
        env = "KEYSTEAD_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Admin API endpoint, e.g. https://localhost:8443 (default: from admin.json).
    #[arg(long, global = true, env = "KEYSTEAD_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Admin token (default: from admin.json).
    #[arg(
        long,
        global = true,
        env = "KEYSTEAD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// CA certificate to trust (default: from admin.json).
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum VaultCommand {
    Create {
        name: String,
        /// Soft-delete retention, 7-90 days.
        #[arg(long)]
        retention_days: Option<u32>,
        /// Refuse purges; cannot be turned off later.
        #[arg(long)]
        purge_protection: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    List {
        #[command(flatten)]
        target: AdminTarget,
    },
    Delete {
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Turn purge protection on (irreversible).
    Protect {
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(Subcommand)]
enum PrincipalCommand {
    /// Create a service principal; prints its client id and (only copy of) its secret.
    Create {
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    List {
        #[command(flatten)]
        target: AdminTarget,
    },
    Delete {
        client_id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(Subcommand)]
enum RoleCommand {
    /// Assign a built-in role, e.g. "Key Vault Secrets User", on a vault or one object.
    Assign {
        #[arg(long)]
        principal: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        vault: String,
        /// Limit to one object: /secrets/NAME, /keys/NAME or /certificates/NAME.
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        target: AdminTarget,
    },
    List {
        #[arg(long)]
        vault: Option<String>,
        #[command(flatten)]
        target: AdminTarget,
    },
    Remove {
        id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Serve { config } => server::serve(config::ServeConfig::load(&config)?).await,
        Command::Vault(cmd) => vault(cmd).await,
        Command::Principal(cmd) => principal(cmd).await,
        Command::Role(cmd) => role(cmd).await,
        Command::Cluster(cmd) => cluster(cmd).await,
        Command::Region(cmd) => region(cmd).await,
        Command::Geo(GeoCommand::Init {
            out,
            regions,
            nodes_per_region,
            host,
            base_port,
            base_domain,
            witness,
            failover,
            failover_after_ms,
            lease_ms,
            failback,
            san,
        }) => {
            let plan = crate::geo_cmd::GeoPlan {
                out,
                regions: regions
                    .split(',')
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .collect(),
                nodes_per_region,
                host,
                base_port,
                base_domain,
                witness,
                failover,
                failover_after_ms,
                lease_ms,
                failback,
                extra_sans: san
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            };
            print(crate::geo_cmd::layout_json(&crate::geo_cmd::init(&plan)?))
        }
        Command::Witness { config } => {
            crate::geo_cmd::witness(config::WitnessConfig::load(&config)?).await
        }
        Command::Demo(DemoCommand::Geo { out, base_port }) => {
            crate::demo_geo::run(crate::demo_geo::DemoArgs { out, base_port }).await
        }
    }
}

async fn region(cmd: RegionCommand) -> Result<(), String> {
    let request = |target: &AdminTarget, body: serde_json::Value| {
        let client = AdminClient::new(target);
        async move { client?.post("/admin/region", body).await }
    };
    match cmd {
        RegionCommand::Status { json, target } => {
            let status = AdminClient::new(&target)?.get("/admin/region").await?;
            if json {
                print(status)
            } else {
                crate::demo_geo::print_status(&status);
                Ok(())
            }
        }
        RegionCommand::Switchover { to, target } => {
            print(request(&target, json!({"op": "switchover", "to": to})).await?)
        }
        RegionCommand::Failover { to, force, target } => {
            print(request(&target, json!({"op": "failover", "to": to, "force": force})).await?)
        }
        RegionCommand::Divergence(cmd) => {
            let (body, target) = match cmd {
                DivergenceCommand::List { target } => (json!({"op": "divergence_list"}), target),
                DivergenceCommand::Show { id, target } => {
                    (json!({"op": "divergence_show", "id": id}), target)
                }
                DivergenceCommand::Apply { id, target } => {
                    (json!({"op": "divergence_apply", "id": id}), target)
                }
                DivergenceCommand::Discard { id, target } => {
                    (json!({"op": "divergence_discard", "id": id}), target)
                }
            };
            print(request(&target, body).await?)
        }
    }
}

async fn cluster(cmd: ClusterCommand) -> Result<(), String> {
    match cmd {
        ClusterCommand::Init {
            nodes,
            out,
            host,
            api_base_port,
            cluster_base_port,
            zones,
            region,
            base_domain,
        } => {
            let plan = crate::cluster_cmd::InitPlan {
                nodes,
                out,
                host,
                api_base_port,
                cluster_base_port,
                zones: zones
                    .split(',')
                    .map(|z| z.trim().to_string())
                    .filter(|z| !z.is_empty())
                    .collect(),
                region,
                base_domain,
            };
            print(crate::cluster_cmd::init(&plan)?)
        }
        ClusterCommand::Status { target } => {
            print(AdminClient::new(&target)?.get("/admin/cluster").await?)
        }
        ClusterCommand::Join {
            node_id,
            addr,
            api_addr,
            zone,
            region,
            allow_unsafe_layout,
            target,
        } => {
            let body = json!({"node_id": node_id, "addr": addr, "api_addr": api_addr, "zone": zone, "region": region, "allow_unsafe_layout": allow_unsafe_layout});
            print(
                AdminClient::new(&target)?
                    .post("/admin/cluster/nodes", body)
                    .await?,
            )
        }
        ClusterCommand::Remove { node_id, target } => print(
            AdminClient::new(&target)?
                .delete(&format!("/admin/cluster/nodes/{node_id}"))
                .await?,
        ),
    }
}

fn print(value: serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

async fn vault(cmd: VaultCommand) -> Result<(), String> {
    match cmd {
        VaultCommand::Create {
            name,
            retention_days,
            purge_protection,
            target,
        } => {
            let body = json!({"name": name, "retention_days": retention_days, "purge_protection": purge_protection});
            print(
                AdminClient::new(&target)?
                    .post("/admin/vaults", body)
                    .await?,
            )
        }
        VaultCommand::List { target } => {
            print(AdminClient::new(&target)?.get("/admin/vaults").await?)
        }
        VaultCommand::Delete { name, target } => print(
            AdminClient::new(&target)?
                .delete(&format!("/admin/vaults/{name}"))
                .await?,
        ),
        VaultCommand::Protect { name, target } => print(
            AdminClient::new(&target)?
                .post(&format!("/admin/vaults/{name}/purge-protection"), json!({}))
                .await?,
        ),
    }
}

async fn principal(cmd: PrincipalCommand) -> Result<(), String> {
    match cmd {
        PrincipalCommand::Create { name, target } => print(
            AdminClient::new(&target)?
                .post("/admin/principals", json!({"name": name}))
                .await?,
        ),
        PrincipalCommand::List { target } => {
            print(AdminClient::new(&target)?.get("/admin/principals").await?)
        }
        PrincipalCommand::Delete { client_id, target } => print(
            AdminClient::new(&target)?
                .delete(&format!("/admin/principals/{client_id}"))
                .await?,
        ),
    }
}

async fn role(cmd: RoleCommand) -> Result<(), String> {
    match cmd {
        RoleCommand::Assign {
            principal,
            role,
            vault,
            scope,
            target,
        } => {
            let body =
                json!({"principal": principal, "role": role, "vault": vault, "scope": scope});
            print(
                AdminClient::new(&target)?
                    .post("/admin/roles", body)
                    .await?,
            )
        }
        RoleCommand::List { vault, target } => {
            let path = match vault {
                Some(v) => format!("/admin/roles?vault={v}"),
                None => "/admin/roles".to_string(),
            };
            print(AdminClient::new(&target)?.get(&path).await?)
        }
        RoleCommand::Remove { id, target } => print(
            AdminClient::new(&target)?
                .delete(&format!("/admin/roles/{id}"))
                .await?,
        ),
    }
}
