//! `keystead demo geo`: a whole geo-redundant deployment on one machine in one command — two
//! regions of three nodes (one per zone) plus a witness, as child processes of this one. It
//! prints the URLs, credentials and the region status table, then waits for Ctrl-C and stops
//! everything. Failing a region is `kill` on its three node processes (their pids are printed).

use crate::admin_client::AdminClient;
use crate::cli::AdminTarget;
use crate::geo_cmd::{self, GeoPlan};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct DemoArgs {
    pub out: PathBuf,
    pub base_port: u16,
}

/// Child processes, killed when dropped (also on an early error).
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(name: &str, args: &[&str], logs: &Path) -> Result<(String, Child), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(logs.join(format!("{name}.log")))
        .map_err(|e| format!("log file: {e}"))?;
    let child = Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    Ok((name.to_string(), child))
}

async fn admin(endpoint: &str, token: &str, ca: &Path) -> Result<AdminClient, String> {
    AdminClient::new(&AdminTarget {
        data_dir: PathBuf::from("/nonexistent"),
        endpoint: Some(endpoint.to_string()),
        token: Some(token.to_string()),
        ca_cert: Some(ca.to_path_buf()),
    })
}

/// Waits (bounded) until `f` succeeds.
async fn until<T, F, Fut>(what: &str, seconds: u64, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for _ in 0..seconds * 4 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("{what}: {last}"))
}

pub async fn run(args: DemoArgs) -> Result<(), String> {
    let plan = GeoPlan {
        out: args.out.clone(),
        regions: vec!["east".into(), "west".into()],
        nodes_per_region: 3,
        host: "127.0.0.1".into(),
        base_port: args.base_port,
        base_domain: "vault.localhost".into(),
        witness: true,
        failover: "promote".into(),
        failover_after_ms: 6000,
        lease_ms: 2000,
        failback: "manual".into(),
        extra_sans: Vec::new(),
    };
    let layout = if args.out.join("kek").exists() {
        return Err(format!(
            "{} holds an earlier demo; remove it or pass another --out",
            args.out.display()
        ));
    } else {
        geo_cmd::init(&plan)?
    };
    let logs = layout.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let mut children = Children(Vec::new());
    if let Some(witness) = &layout.witness_config {
        let path = witness.display().to_string();
        children
            .0
            .push(spawn("witness", &["witness", "--config", &path], &logs)?);
    }
    for node in &layout.nodes {
        let path = node.config.display().to_string();
        let name = format!("{}-{}", node.region, node.index);
        children
            .0
            .push(spawn(&name, &["serve", "--config", &path], &logs)?);
    }
    // The primary region's first node writes the admin credential on first start.
    let first = &layout.nodes[0];
    let admin_file = first.data_dir.join("admin.json");
    let admin_json: Value = until("the primary's admin credential", 90, || async {
        let bytes = std::fs::read(&admin_file).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    })
    .await?;
    let token = admin_json["token"].as_str().unwrap_or_default().to_string();
    // Join nodes 2 and 3 of each region to their region's cluster (node 1 bootstrapped it).
    for region in &plan.regions {
        let nodes: Vec<_> = layout
            .nodes
            .iter()
            .filter(|n| &n.region == region)
            .collect();
        let leader = format!("https://127.0.0.1:{}", nodes[0].api_port);
        let client = admin(&leader, &token, &layout.ca).await?;
        for node in &nodes[1..] {
            let r = plan.regions.iter().position(|x| x == region).unwrap_or(0);
            let cluster_port = plan.base_port + 1000 + 100 * r as u16 + (node.index as u16 - 1);
            let body = json!({
                "node_id": node.index,
                "addr": format!("127.0.0.1:{cluster_port}"),
                "api_addr": format!("127.0.0.1:{}", node.api_port),
                "zone": format!("{region}-zone-{}", node.index),
                "region": region,
            });
            until(&format!("joining {region}-{}", node.index), 90, || async {
                client.post("/admin/cluster/nodes", body.clone()).await
            })
            .await?;
        }
    }
    // A joined node starts serving its API only once the deployment reached it (through its
    // region's Raft group, and for the secondary region through the stream): say "ready" only
    // when every node answers /readyz, so the addresses printed below all work at once.
    for node in &layout.nodes {
        let client = admin(
            &format!("https://127.0.0.1:{}", node.api_port),
            &token,
            &layout.ca,
        )
        .await?;
        until(
            &format!("{}-{} ready", node.region, node.index),
            90,
            || async { client.get("/readyz").await },
        )
        .await?;
    }
    let status_client = admin(
        &format!("https://127.0.0.1:{}", first.api_port),
        &token,
        &layout.ca,
    )
    .await?;
    let status = until("region status", 60, || async {
        status_client.get("/admin/region").await
    })
    .await?;
    println!("Keystead geo demo in {}", layout.dir.display());
    println!("CA certificate: {}", layout.ca.display());
    println!("admin token:    {token}");
    println!();
    for node in &layout.nodes {
        let pid = children
            .0
            .iter()
            .find(|(n, _)| n == &format!("{}-{}", node.region, node.index))
            .map(|(_, c)| c.id())
            .unwrap_or(0);
        println!(
            "  {}-{}  https://demo.vault.localhost:{}  (pid {pid})",
            node.region, node.index, node.api_port
        );
    }
    println!();
    print_status(&status);
    println!();
    println!("Create a vault:   keystead vault create demo --endpoint https://127.0.0.1:{} --token={token} --ca-cert {}", first.api_port, layout.ca.display());
    println!("Fail region east: kill the three east pids above; west promotes after failover_after (6 s).");
    println!("Watch:            keystead region status --endpoint https://127.0.0.1:{} --token=... --ca-cert ...", layout.nodes[3].api_port);
    println!("Logs:             {}", logs.display());
    println!("Ctrl-C stops the demo.");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    crate::server::wait_for_signal().await;
    drop(children);
    Ok(())
}

/// The status as a table: one line per region, then the witness.
pub fn print_status(status: &Value) {
    println!(
        "{:<8} {:<10} {:>5} {:<8} {:>8} {:>9} {:>9} {:<9}",
        "REGION", "ROLE", "EPOCH", "PRIMARY", "SEQ", "LAG", "LAG_S", "REACHABLE"
    );
    for r in status["regions"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:<10} {:>5} {:<8} {:>8} {:>9} {:>9.3} {:<9}",
            r["region"].as_str().unwrap_or("?"),
            r["role"].as_str().unwrap_or("unreachable"),
            r["epoch"]
                .as_u64()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            r["primary"].as_str().unwrap_or(""),
            r["seq"].as_u64().map(|e| e.to_string()).unwrap_or_default(),
            r["lag_entries"]
                .as_u64()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            r["lag_seconds"].as_f64().unwrap_or(0.0),
            r.get("reachable").and_then(Value::as_bool).unwrap_or(true),
        );
    }
    let w = &status["witness"];
    if !w.is_null() {
        println!(
            "witness  epoch {} primary {} reachable {}",
            w["epoch"]
                .as_u64()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            w["primary"].as_str().unwrap_or("?"),
            w.get("reachable").and_then(Value::as_bool).unwrap_or(true),
        );
    }
}
