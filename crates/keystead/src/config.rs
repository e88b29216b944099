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
//! ```

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
