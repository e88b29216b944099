//! Which part of Keystead a request is for, decided by its host: `<vault>.<base-domain>[:port]`
//! addresses a vault; every other host (localhost, 127.0.0.1, ...) is the service itself.

use axum::http::{header, Request};
use keystead_model::VaultName;

/// The host and port the client used, exactly as sent (ids and links echo it back).
#[derive(Clone, Debug)]
pub(crate) struct ClientHost {
    /// `host[:port]` as the client wrote it.
    pub authority: String,
    pub hostname: String,
    pub port: Option<u16>,
}

pub(crate) enum Target {
    Vault(VaultName),
    Service,
}

impl ClientHost {
    pub fn from_request<B>(req: &Request<B>) -> Option<ClientHost> {
        let raw = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))?;
        let authority = raw.trim().to_ascii_lowercase();
        let (hostname, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse() {
                Ok(port) => (h.to_string(), Some(port)),
                Err(_) => (authority.clone(), None),
            },
            _ => (authority.clone(), None),
        };
        Some(ClientHost {
            authority,
            hostname,
            port,
        })
    }

    /// `https://<host>[:port]`, the prefix of every id and link in responses.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.authority)
    }

    /// `https://<name>[:port]` with the client's port.
    pub fn url_for(&self, name: &str) -> String {
        match self.port {
            Some(port) => format!("https://{name}:{port}"),
            None => format!("https://{name}"),
        }
    }

    pub fn target(&self, base_domain: &str) -> Target {
        let suffix = format!(".{base_domain}");
        match self.hostname.strip_suffix(&suffix) {
            Some(label) if !label.contains('.') => match VaultName::parse(label) {
                Some(vault) => Target::Vault(vault),
                None => Target::Service,
            },
            _ => Target::Service,
        }
    }
}
