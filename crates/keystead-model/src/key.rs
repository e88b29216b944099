//! Keys as the state machine stores them: the public half in clear (it is rendered as a JWK on
//! every read), the private half sealed, the permitted operations, and rotation policies.
//!
//! Everything here is plain data plus pure parsing helpers; generation and every cryptographic
//! operation live in `keystead-crypto`, sealing in `keystead-core`.

use crate::{Ciphertext, UnixTime};
use serde::{Deserialize, Serialize};

/// The kind of key (`kty` without the `-HSM` suffix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    Rsa,
    Ec,
    Oct,
}

impl KeyType {
    /// Parses a JWK `kty`; the second value is whether the `-HSM` variant was named.
    pub fn parse(raw: &str) -> Option<(KeyType, bool)> {
        match raw {
            "RSA" => Some((KeyType::Rsa, false)),
            "RSA-HSM" => Some((KeyType::Rsa, true)),
            "EC" => Some((KeyType::Ec, false)),
            "EC-HSM" => Some((KeyType::Ec, true)),
            "oct" => Some((KeyType::Oct, false)),
            "oct-HSM" => Some((KeyType::Oct, true)),
            _ => None,
        }
    }

    /// The JWK `kty` of a software-protected key. Keystead never reports `-HSM`: the keys it
    /// holds are software-protected whatever the caller asked for.
    pub fn jwk_name(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::Ec => "EC",
            KeyType::Oct => "oct",
        }
    }

    /// Operations a new key of this type permits when the caller names none.
    pub fn default_ops(self) -> Vec<KeyOp> {
        use KeyOp::*;
        match self {
            KeyType::Rsa => vec![Encrypt, Decrypt, Sign, Verify, WrapKey, UnwrapKey],
            KeyType::Ec => vec![Sign, Verify],
            KeyType::Oct => vec![Encrypt, Decrypt, Sign, Verify, WrapKey, UnwrapKey],
        }
    }
}

/// Elliptic curves Key Vault supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Curve {
    P256,
    P384,
    P521,
    P256K,
}

impl Curve {
    pub fn parse(raw: &str) -> Option<Curve> {
        match raw {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            "P-256K" | "SECP256K1" => Some(Curve::P256K),
            _ => None,
        }
    }

    /// The exact JWK `crv` spelling the SDKs expect.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::P256K => "P-256K",
        }
    }

    /// Bytes per coordinate (and per signature half).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 | Curve::P256K => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Curve::P256 | Curve::P256K => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }
}

/// A JWK key operation (`key_ops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    WrapKey,
    UnwrapKey,
    Import,
    Export,
}

impl KeyOp {
    pub fn parse(raw: &str) -> Option<KeyOp> {
        Some(match raw {
            "encrypt" => KeyOp::Encrypt,
            "decrypt" => KeyOp::Decrypt,
            "sign" => KeyOp::Sign,
            "verify" => KeyOp::Verify,
            "wrapKey" => KeyOp::WrapKey,
            "unwrapKey" => KeyOp::UnwrapKey,
            "import" => KeyOp::Import,
            "export" => KeyOp::Export,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyOp::Encrypt => "encrypt",
            KeyOp::Decrypt => "decrypt",
            KeyOp::Sign => "sign",
            KeyOp::Verify => "verify",
            KeyOp::WrapKey => "wrapKey",
            KeyOp::UnwrapKey => "unwrapKey",
            KeyOp::Import => "import",
            KeyOp::Export => "export",
        }
    }
}

/// The public half of a key, big-endian as in a JWK.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        crv: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// Symmetric keys have no public half; only their size is public.
    Oct {
        bits: u32,
    },
}

impl PublicKey {
    pub fn key_type(&self) -> KeyType {
        match self {
            PublicKey::Rsa { .. } => KeyType::Rsa,
            PublicKey::Ec { .. } => KeyType::Ec,
            PublicKey::Oct { .. } => KeyType::Oct,
        }
    }

    /// Key size in bits (RSA modulus, curve, or symmetric key).
    pub fn bits(&self) -> u32 {
        match self {
            PublicKey::Rsa { n, .. } => {
                let trimmed: &[u8] = match n.iter().position(|b| *b != 0) {
                    Some(i) => &n[i..],
                    None => &[],
                };
                match trimmed.first() {
                    Some(first) => (trimmed.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
                    None => 0,
                }
            }
            PublicKey::Ec { crv, .. } => crv.bits(),
            PublicKey::Oct { bits } => *bits,
        }
    }
}

/// A key release policy, stored as given (Keystead has no attestation service to enforce it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePolicy {
    pub content_type: Option<String>,
    pub immutable: bool,
    pub data: Vec<u8>,
}

/// One key version's material and usage rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMaterial {
    pub public: PublicKey,
    /// Sealed PKCS#8 DER (RSA, EC) or raw key bytes (oct), AAD-bound to vault/keys/name/version.
    pub private: Ciphertext,
    /// The caller asked for an `-HSM` key type; Keystead still holds it in software.
    pub hsm_requested: bool,
    pub key_ops: Vec<KeyOp>,
    pub exportable: bool,
    pub release_policy: Option<ReleasePolicy>,
}

/// What a lifetime action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationAction {
    Rotate,
    Notify,
}

impl RotationAction {
    pub fn parse(raw: &str) -> Option<RotationAction> {
        match raw.to_ascii_lowercase().as_str() {
            "rotate" => Some(RotationAction::Rotate),
            "notify" => Some(RotationAction::Notify),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RotationAction::Rotate => "Rotate",
            RotationAction::Notify => "Notify",
        }
    }
}

/// When a lifetime action fires; durations are ISO-8601 as the caller wrote them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationTrigger {
    AfterCreate(String),
    BeforeExpiry(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeAction {
    pub action: RotationAction,
    pub trigger: RotationTrigger,
}

/// A key's rotation policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    pub lifetime_actions: Vec<LifetimeAction>,
    /// ISO-8601 duration: the expiry given to versions created by rotation.
    pub expiry_time: Option<String>,
    pub created: UnixTime,
    pub updated: UnixTime,
}

impl RotationPolicy {
    /// The moment the latest version (created at `created`, expiring at `expires`) is due for
    /// automatic rotation, if the policy has a `Rotate` action that applies.
    pub fn rotation_due_at(
        &self,
        created: UnixTime,
        expires: Option<UnixTime>,
    ) -> Option<UnixTime> {
        self.lifetime_actions
            .iter()
            .filter(|a| a.action == RotationAction::Rotate)
            .filter_map(|a| match &a.trigger {
                RotationTrigger::AfterCreate(d) => {
                    parse_duration(d).map(|s| created.saturating_add(s))
                }
                RotationTrigger::BeforeExpiry(d) => {
                    Some(expires?.saturating_sub(parse_duration(d)?))
                }
            })
            .min()
    }
}

/// Parses an ISO-8601 duration (`P90D`, `P1Y2M`, `PT12H`, `P1W`) into seconds. Years count as
/// 365 days and months as 30, which is how Key Vault documents its rotation durations.
pub fn parse_duration(raw: &str) -> Option<i64> {
    let rest = raw
        .trim()
        .strip_prefix('P')
        .or_else(|| raw.trim().strip_prefix('p'))?;
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut in_time = false;
    let mut number = String::new();
    let mut saw_unit = false;
    for ch in rest.chars() {
        match ch {
            'T' | 't' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' => number.push(ch),
            unit => {
                let n: i64 = number.parse().ok()?;
                number.clear();
                let seconds = match (in_time, unit.to_ascii_uppercase()) {
                    (false, 'Y') => 365 * 86_400,
                    (false, 'M') => 30 * 86_400,
                    (false, 'W') => 7 * 86_400,
                    (false, 'D') => 86_400,
                    (true, 'H') => 3_600,
                    (true, 'M') => 60,
                    (true, 'S') => 1,
                    _ => return None,
                };
                total = total.checked_add(n.checked_mul(seconds)?)?;
                saw_unit = true;
            }
        }
    }
    (number.is_empty() && saw_unit).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("P28D"), Some(28 * 86_400));
        assert_eq!(parse_duration("P1Y"), Some(365 * 86_400));
        assert_eq!(parse_duration("P1M"), Some(30 * 86_400));
        assert_eq!(parse_duration("PT1H30M"), Some(5_400));
        assert_eq!(parse_duration("P1DT1S"), Some(86_401));
        assert_eq!(parse_duration("P"), None);
        assert_eq!(parse_duration("28D"), None);
        assert_eq!(parse_duration("P28"), None);
        assert_eq!(parse_duration("PT1D"), None);
    }

    #[test]
    fn rotation_due() {
        let policy = RotationPolicy {
            lifetime_actions: vec![
                LifetimeAction {
                    action: RotationAction::Notify,
                    trigger: RotationTrigger::AfterCreate("P1D".into()),
                },
                LifetimeAction {
                    action: RotationAction::Rotate,
                    trigger: RotationTrigger::AfterCreate("P30D".into()),
                },
            ],
            expiry_time: None,
            created: 0,
            updated: 0,
        };
        assert_eq!(policy.rotation_due_at(100, None), Some(100 + 30 * 86_400));
    }

    #[test]
    fn rsa_bits() {
        let mut n = vec![0u8; 257];
        n[1] = 0x80;
        assert_eq!(PublicKey::Rsa { n, e: vec![1] }.bits(), 2048);
    }
}
