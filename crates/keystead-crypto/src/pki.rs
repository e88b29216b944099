//! A local certificate authority and TLS certificates for dev mode.
//!
//! Dev mode has to serve HTTPS (Azure SDKs refuse plain HTTP) without any external PKI,
//! so on first start we mint a small CA and a server certificate signed by it; the user
//! trusts the CA once. The same CA later issues node certificates, which is why leaves
//! carry both serverAuth and clientAuth (node-to-node mTLS).
//!
//! All keys are ECDSA P-256, generated and used through rcgen's aws-lc-rs backend.
//! Private keys leave this module only as `Zeroizing` PEM strings.

use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use zeroize::{Zeroize as _, Zeroizing};

use crate::random::fill;
use crate::CryptoError;

const CA_COMMON_NAME: &str = "Keystead Local CA";
const ORGANIZATION: &str = "Keystead";
/// ~10 years: the CA is trusted once by hand, so it should outlive any dev setup.
const CA_VALIDITY_DAYS: i64 = 3650;
/// ~2 years: under the 825-day limit some TLS clients (Apple) enforce for leaves.
const LEAF_VALIDITY_DAYS: i64 = 730;
/// Certificates start a day in the past so small clock differences between machines
/// do not make a fresh certificate "not yet valid".
const BACKDATE_DAYS: i64 = 1;

/// A dev CA plus a server certificate it signed, all PEM-encoded.
pub struct DevPki {
    pub ca_cert_pem: String,
    pub ca_key_pem: Zeroizing<String>,
    pub server_cert_pem: String,
    pub server_key_pem: Zeroizing<String>,
}

impl fmt::Debug for DevPki {
    // Certificates are public; the private keys are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevPki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("server_cert_pem", &self.server_cert_pem)
            .finish_non_exhaustive()
    }
}

impl DevPki {
    /// New CA (CN "Keystead Local CA", basic constraints CA, key usage certSign/crlSign,
    /// ~10 years) and a server certificate signed by it, valid ~2 years, for the given
    /// DNS names and IP addresses: an entry that parses as an IP address (optionally in
    /// `[...]` brackets) becomes an IP SAN, anything else a DNS SAN; wildcards like
    /// `*.vault.localhost` are allowed. EKU serverAuth + clientAuth; CN = first name.
    pub fn generate(subject_alt_names: &[String]) -> Result<DevPki, CryptoError> {
        let ca_key = new_key()?;
        let ca_params = ca_params()?;
        let ca_cert = ca_params.self_signed(&*ca_key).map_err(pki_error)?;
        let issuer = Issuer::new(ca_params, &*ca_key);
        let (server_cert_pem, server_key_pem) = issue(&issuer, None, subject_alt_names)?;
        Ok(DevPki {
            ca_cert_pem: ca_cert.pem(),
            ca_key_pem: Zeroizing::new(ca_key.serialize_pem()),
            server_cert_pem,
            server_key_pem,
        })
    }

    /// Issues another leaf certificate (e.g. for a cluster node) from an existing CA
    /// certificate and its private key (PEM). Returns (cert_pem, key_pem). The CA must be
    /// a CA certificate, currently valid, and match the key; the leaf's validity is
    /// capped at the CA's expiry.
    pub fn issue_leaf(
        ca_cert_pem: &str,
        ca_key_pem: &str,
        subject_alt_names: &[String],
    ) -> Result<(String, Zeroizing<String>), CryptoError> {
        // rcgen's error text is not surfaced for the key, just in case it echoes input.
        let ca_key = KeyGuard(KeyPair::from_pem(ca_key_pem).map_err(|_| CryptoError::InvalidKey)?);

        let (_, pem) = x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
            .map_err(|_| CryptoError::Pki("CA certificate is not valid PEM".into()))?;
        let ca = pem
            .parse_x509()
            .map_err(|_| CryptoError::Pki("CA certificate could not be parsed".into()))?;
        if !ca.is_ca() {
            return Err(CryptoError::Pki("certificate is not a CA".into()));
        }
        if ca.public_key().subject_public_key.data.as_ref() != ca_key.der_bytes() {
            return Err(CryptoError::Pki(
                "CA private key does not match the CA certificate".into(),
            ));
        }
        if !ca.validity().is_valid() {
            return Err(CryptoError::Pki(
                "CA certificate is expired or not yet valid".into(),
            ));
        }
        let ca_not_after = OffsetDateTime::from_unix_timestamp(ca.validity().not_after.timestamp())
            .map_err(|_| CryptoError::Pki("CA certificate has an unusable expiry".into()))?;

        // Rebuilds the issuer (subject DN, key identifier, key usages) from the CA
        // certificate itself so issued leaves chain to it exactly.
        let issuer = Issuer::from_ca_cert_der(&pem.contents.as_slice().into(), &*ca_key)
            .map_err(pki_error)?;
        issue(&issuer, Some(ca_not_after), subject_alt_names)
    }
}

/// An rcgen key pair whose PKCS#8 copy is wiped when dropped (rcgen's `zeroize`
/// feature provides the wiping, but not on drop).
struct KeyGuard(KeyPair);

impl Deref for KeyGuard {
    type Target = KeyPair;
    fn deref(&self) -> &KeyPair {
        &self.0
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn new_key() -> Result<KeyGuard, CryptoError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map(KeyGuard)
        .map_err(pki_error)
}

fn pki_error(e: rcgen::Error) -> CryptoError {
    CryptoError::Pki(e.to_string())
}

fn ca_params() -> Result<CertificateParams, CryptoError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    // Path length 0: this CA signs leaves only, never intermediates.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial()?);
    (params.not_before, params.not_after) = validity(CA_VALIDITY_DAYS, None)?;
    Ok(params)
}

/// Issues a leaf for `names` with a fresh P-256 key; returns (cert PEM, key PEM).
fn issue(
    issuer: &Issuer<'_, &KeyPair>,
    cap: Option<OffsetDateTime>,
    names: &[String],
) -> Result<(String, Zeroizing<String>), CryptoError> {
    let first = names.first().ok_or_else(|| {
        CryptoError::Pki("at least one subject alternative name is required".into())
    })?;

    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|n| parse_san(n))
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, strip_brackets(first.trim()));
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    (params.not_before, params.not_after) = validity(LEAF_VALIDITY_DAYS, cap)?;

    let key = new_key()?;
    let cert = params.signed_by(&*key, issuer).map_err(pki_error)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

/// (now - backdate, now + days), the end capped at `cap` if given.
fn validity(
    days: i64,
    cap: Option<OffsetDateTime>,
) -> Result<(OffsetDateTime, OffsetDateTime), CryptoError> {
    let now = OffsetDateTime::now_utc();
    let not_before = now
        .checked_sub(Duration::days(BACKDATE_DAYS))
        .ok_or_else(|| CryptoError::Pki("clock out of range".into()))?;
    let mut not_after = now
        .checked_add(Duration::days(days))
        .ok_or_else(|| CryptoError::Pki("clock out of range".into()))?;
    if let Some(cap) = cap {
        not_after = not_after.min(cap);
    }
    Ok((not_before, not_after))
}

/// A random, positive, fixed-length 128-bit serial (RFC 5280 allows up to 20 octets).
fn random_serial() -> Result<SerialNumber, CryptoError> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes)?;
    // Clear the sign bit (serials must be positive) and set the next one so the DER
    // encoding is always exactly 16 bytes with no leading zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn strip_brackets(name: &str) -> &str {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
}

/// IP address (bare or bracketed IPv6) -> IP SAN; otherwise a validated DNS SAN.
fn parse_san(name: &str) -> Result<SanType, CryptoError> {
    let trimmed = name.trim();
    if let Ok(ip) = strip_brackets(trimmed).parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if !is_valid_dns_name(trimmed) {
        return Err(CryptoError::Pki(format!("invalid DNS name {name:?}")));
    }
    Ia5String::try_from(trimmed)
        .map(SanType::DnsName)
        .map_err(|_| CryptoError::Pki(format!("invalid DNS name {name:?}")))
}

/// Hostname syntax (letters, digits, '-', '_'), at most 253 characters, labels of 1-63
/// characters not starting or ending with '-', and '*' only as the whole leftmost label.
fn is_valid_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').enumerate().all(|(i, label)| {
        if label == "*" {
            return i == 0;
        }
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) && name != "*"
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;

    fn names() -> Vec<String> {
        vec![
            "vault.localhost".to_string(),
            "*.vault.localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ]
    }

    /// Parses a PEM certificate and checks it is signed by `ca_pem`'s key.
    fn check_leaf(cert_pem: &str, ca_pem: &str, expect_cn: &str) {
        let (_, ca) = parse_x509_pem(ca_pem.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        let (_, leaf) = parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        assert!(!leaf.is_ca());
        let cn = leaf.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), expect_cn);
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(leaf.validity().is_valid());
    }

    #[test]
    fn generate_produces_parsable_chain() {
        let pki = DevPki::generate(&names()).unwrap();
        assert!(pki.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki
            .server_cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.ca_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(pki
            .server_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{pki:?}").contains("PRIVATE KEY"));

        let (_, ca) = parse_x509_pem(pki.ca_cert_pem.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        assert!(ca.is_ca());
        ca.verify_signature(None).unwrap();
        let cn = ca.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "Keystead Local CA");
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp())
            / (365 * 86400);
        assert!((9..=10).contains(&years));

        check_leaf(&pki.server_cert_pem, &pki.ca_cert_pem, "vault.localhost");
        let (_, leaf) = parse_x509_pem(pki.server_cert_pem.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        let sans = &leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert!(sans.contains(&GeneralName::DNSName("vault.localhost")));
        assert!(sans.contains(&GeneralName::DNSName("*.vault.localhost")));
        assert!(sans.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert!(sans.contains(&GeneralName::IPAddress(&v6)));

        // Keys load back.
        KeyPair::from_pem(&pki.server_key_pem).unwrap();
    }

    #[test]
    fn issue_leaf_from_generated_ca() {
        let pki = DevPki::generate(&["localhost".to_string()]).unwrap();
        let (cert, key) = DevPki::issue_leaf(
            &pki.ca_cert_pem,
            &pki.ca_key_pem,
            &[
                "node-2.keystead.internal".to_string(),
                "[fd00::2]".to_string(),
            ],
        )
        .unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        check_leaf(&cert, &pki.ca_cert_pem, "node-2.keystead.internal");
    }

    #[test]
    fn issue_leaf_rejects_bad_inputs() {
        let a = DevPki::generate(&["a.localhost".to_string()]).unwrap();
        let b = DevPki::generate(&["b.localhost".to_string()]).unwrap();
        let names = vec!["x.localhost".to_string()];
        // Key from another CA.
        assert!(DevPki::issue_leaf(&a.ca_cert_pem, &b.ca_key_pem, &names).is_err());
        // A leaf is not a CA.
        assert!(DevPki::issue_leaf(&a.server_cert_pem, &a.server_key_pem, &names).is_err());
        assert!(matches!(
            DevPki::issue_leaf(&a.ca_cert_pem, "garbage", &names),
            Err(CryptoError::InvalidKey)
        ));
        assert!(DevPki::issue_leaf("garbage", &a.ca_key_pem, &names).is_err());
        assert!(DevPki::issue_leaf(&a.ca_cert_pem, &a.ca_key_pem, &[]).is_err());
    }

    #[test]
    fn san_parsing() {
        assert!(matches!(parse_san("10.0.0.1"), Ok(SanType::IpAddress(_))));
        assert!(matches!(parse_san("[::1]"), Ok(SanType::IpAddress(_))));
        assert!(matches!(parse_san("localhost"), Ok(SanType::DnsName(_))));
        assert!(matches!(parse_san("*.a.b"), Ok(SanType::DnsName(_))));
        for bad in [
            "",
            "*",
            "a.*.b",
            "a..b",
            "-a.b",
            "a b",
            "a/b",
            "ä.example",
            "*a.b",
        ] {
            assert!(parse_san(bad).is_err(), "accepted {bad:?}");
        }
        assert!(DevPki::generate(&[]).is_err());
        assert!(DevPki::generate(&["bad name".to_string()]).is_err());
    }
}
