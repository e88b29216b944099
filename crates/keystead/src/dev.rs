//! `keystead dev`: a single-node vault ready for the Azure SDK samples. On first start it
//! creates the KEK, a local CA, a `demo` vault and a service principal with
//! "Key Vault Administrator" on it, and writes `dev-credentials.json`; later starts reuse them.

use crate::cli::DevArgs;
use crate::files::write_atomic;
use crate::server::{self, absolute, Listener};
use crate::tls;
use keystead_core::Node;
use keystead_model::VaultName;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

const DEMO_VAULT: &str = "demo";

pub async fn run(args: DevArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("creating {}: {e}", args.data_dir.display()))?;
    let data_dir = absolute(&args.data_dir);
    let kek = keystead_crypto::Kek::load_or_create_file(&data_dir.join("kek.key"))
        .map_err(|e| format!("loading the KEK: {e}"))?;
    let tls = tls::load_or_create(&data_dir, &kek, &args.base_domain)?;
    let ca_path = tls.ca_cert_path.clone();
    let (node, bootstrap) = server::open_node(&data_dir, kek).await?;
    let authority = format!("https://localhost:{}", args.port);
    server::write_admin_file(&data_dir, &bootstrap, &authority, ca_path.as_ref())?;
    ensure_demo(&node, &data_dir, &args, &authority).await?;

    let ip: IpAddr = args
        .bind
        .parse()
        .map_err(|_| format!("--bind {} is not an IP address", args.bind))?;
    let listener = Listener {
        listen: SocketAddr::new(ip, args.port),
        allow_stale_reads: false,
        base_domain: args.base_domain.clone(),
        authority_url: None,
        throttle: server::throttle_limits(args.throttle.as_deref(), "--throttle")?,
        tls,
    };
    let credentials_path = data_dir.join("dev-credentials.json");
    let base_domain = args.base_domain.clone();
    server::run(node, None, None, listener, move |addr| {
        print_environment(&credentials_path, &base_domain);
        tracing::info!(%addr, "keystead dev vault ready");
    })
    .await
}

/// Creates the demo vault and its principal unless they exist. Each step is idempotent so an
/// interrupted first start completes on the next one.
async fn ensure_demo(
    node: &Node,
    data_dir: &Path,
    args: &DevArgs,
    authority: &str,
) -> Result<(), String> {
    let demo = VaultName::parse(DEMO_VAULT).ok_or("bad demo vault name")?;
    if node.vault(&demo).map_err(|e| e.to_string())?.is_none() {
        node.create_vault(DEMO_VAULT, None, false)
            .await
            .map_err(|e| format!("creating the demo vault: {e}"))?;
    }
    let credentials_path = data_dir.join("dev-credentials.json");
    if credentials_path.exists() {
        return Ok(());
    }
    let principal = node
        .create_principal("keystead-dev")
        .await
        .map_err(|e| format!("creating the dev principal: {e}"))?;
    node.assign_role(
        &principal.principal.client_id,
        "Key Vault Administrator",
        DEMO_VAULT,
        None,
    )
    .await
    .map_err(|e| format!("assigning the dev role: {e}"))?;
    let credentials = json!({
        "vault_url": format!("https://{DEMO_VAULT}.{}:{}", args.base_domain, args.port),
        "tenant_id": node.tenant_id(),
        "client_id": principal.principal.client_id,
        "client_secret": principal.client_secret.as_str(),
        "authority_host": authority,
        "ca_cert": data_dir.join("ca.pem").display().to_string(),
    });
    let text = zeroize::Zeroizing::new(
        serde_json::to_vec_pretty(&credentials).map_err(|e| e.to_string())?,
    );
    write_atomic(&credentials_path, &text, true)
}

/// Prints the credentials as `export` lines the Azure SDK samples read.
fn print_environment(credentials_path: &Path, base_domain: &str) {
    let Some(c) = std::fs::read(credentials_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return;
    };
    let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    println!("export AZURE_TENANT_ID={}", field("tenant_id"));
    println!("export AZURE_CLIENT_ID={}", field("client_id"));
    println!("export AZURE_CLIENT_SECRET={}", field("client_secret"));
    println!("export AZURE_AUTHORITY_HOST={}", field("authority_host"));
    println!("export VAULT_URL={}", field("vault_url"));
    println!("export REQUESTS_CA_BUNDLE={}", field("ca_cert"));
    eprintln!(
        "# Keystead dev vault at {}. Credentials: {}. Note: map *.{base_domain} to 127.0.0.1 if your resolver does not (see README).",
        field("vault_url"),
        credentials_path.display(),
    );
}
