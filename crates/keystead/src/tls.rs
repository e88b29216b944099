//! TLS material for the HTTPS listener: operator-supplied PEM files, or (default) a local CA
//! and server certificate generated on first start. Generated private keys are stored sealed
//! under the KEK, never in plaintext; only `ca.pem` (public) is written in the clear.

use crate::files::write_atomic;
use keystead_crypto::{pki::DevPki, Kek, SealedBox};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
    /// The CA clients should trust, when Keystead generated it.
    pub ca_cert_path: Option<PathBuf>,
}

const SERVER_KEY_AAD: &[u8] = b"keystead:v1:tls/server-key";
const CA_KEY_AAD: &[u8] = b"keystead:v1:tls/ca-key";

fn seal_to_file(kek: &Kek, aad: &[u8], plaintext: &str, path: &Path) -> Result<(), String> {
    let sealed = kek
        .seal(aad, plaintext.as_bytes())
        .map_err(|e| e.to_string())?;
    let bytes = postcard::to_stdvec(&sealed).map_err(|e| e.to_string())?;
    write_atomic(path, &bytes, true)
}

fn open_file(kek: &Kek, aad: &[u8], path: &Path) -> Result<Zeroizing<String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let sealed: SealedBox =
        postcard::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let plaintext = kek
        .open(aad, &sealed)
        .map_err(|e| format!("{} cannot be opened with this KEK: {e}", path.display()))?;
    String::from_utf8(plaintext.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| format!("{} is not PEM", path.display()))
}

/// Loads the generated CA and server certificate from `data_dir`, creating them on first
/// start for `localhost`, `127.0.0.1`, `<base_domain>` and `*.<base_domain>`.
pub fn load_or_create(
    data_dir: &Path,
    kek: &Kek,
    base_domain: &str,
) -> Result<TlsMaterial, String> {
    let ca_path = data_dir.join("ca.pem");
    let tls_dir = data_dir.join("tls");
    let cert_path = tls_dir.join("server.pem");
    let key_path = tls_dir.join("server-key.sealed");
    if !cert_path.exists() || !key_path.exists() || !ca_path.exists() {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            base_domain.to_string(),
            format!("*.{base_domain}"),
        ];
        let pki = DevPki::generate(&names).map_err(|e| format!("generating the local CA: {e}"))?;
        seal_to_file(
            kek,
            CA_KEY_AAD,
            &pki.ca_key_pem,
            &tls_dir.join("ca-key.sealed"),
        )?;
        seal_to_file(kek, SERVER_KEY_AAD, &pki.server_key_pem, &key_path)?;
        write_atomic(&cert_path, pki.server_cert_pem.as_bytes(), false)?;
        write_atomic(&ca_path, pki.ca_cert_pem.as_bytes(), false)?;
    }
    let cert_pem = std::fs::read_to_string(&cert_path)
        .map_err(|e| format!("reading {}: {e}", cert_path.display()))?;
    Ok(TlsMaterial {
        cert_pem,
        key_pem: open_file(kek, SERVER_KEY_AAD, &key_path)?,
        ca_cert_path: Some(ca_path),
    })
}

/// Operator-supplied certificate chain and key. The key file may be PEM, or sealed under the
/// KEK (as `keystead cluster init` writes it) so no plaintext private key sits on disk.
pub fn load_files(cert: &Path, key: &Path, kek: &Kek) -> Result<TlsMaterial, String> {
    let cert_pem =
        std::fs::read_to_string(cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let raw =
        Zeroizing::new(std::fs::read(key).map_err(|e| format!("reading {}: {e}", key.display()))?);
    let key_pem = if raw.starts_with(b"-----BEGIN") {
        let text =
            std::str::from_utf8(&raw).map_err(|_| format!("{} is not PEM", key.display()))?;
        Zeroizing::new(text.to_string())
    } else {
        open_file(kek, SERVER_KEY_AAD, key)?
    };
    Ok(TlsMaterial {
        cert_pem,
        key_pem,
        ca_cert_path: None,
    })
}

/// Seals a private key PEM for [`load_files`].
pub fn seal_key_file(kek: &Kek, key_pem: &str, path: &Path) -> Result<(), String> {
    seal_to_file(kek, SERVER_KEY_AAD, key_pem, path)
}
