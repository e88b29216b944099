//! Validated names. Key Vault names are case-insensitive: we keep the spelling the object was
//! created with for display and use the lower-cased form as the storage key.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A secret, key or certificate name: `^[0-9a-zA-Z-]{1,127}$`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectName(String);

impl ObjectName {
    pub const MAX_LEN: usize = 127;

    /// Returns `None` when `raw` is not a valid object name.
    pub fn parse(raw: &str) -> Option<ObjectName> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| ObjectName(raw.to_string()))
    }

    /// The spelling the caller used.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used for lookups and storage keys.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A vault name, as in Azure: 3–24 characters, letters, digits and hyphens, starting with a
/// letter, not ending with a hyphen, no consecutive hyphens. Always stored lower-case (it is a
/// DNS label in the vault's URL).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VaultName(String);

impl VaultName {
    pub fn parse(raw: &str) -> Option<VaultName> {
        let lower = raw.to_ascii_lowercase();
        let bytes = lower.as_bytes();
        let ok = (3..=24).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes[bytes.len() - 1] != b'-'
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && !lower.contains("--");
        ok.then_some(VaultName(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VaultName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names() {
        assert!(ObjectName::parse("My-Secret-1").is_some());
        assert_eq!(
            ObjectName::parse("My-Secret").map(|n| n.key()),
            Some("my-secret".into())
        );
        assert!(ObjectName::parse("").is_none());
        assert!(ObjectName::parse("bad_name").is_none());
        assert!(ObjectName::parse(&"a".repeat(127)).is_some());
        assert!(ObjectName::parse(&"a".repeat(128)).is_none());
        assert!(ObjectName::parse("ünïcode").is_none());
    }

    #[test]
    fn vault_names() {
        assert_eq!(VaultName::parse("Demo").map(|v| v.0), Some("demo".into()));
        assert!(VaultName::parse("ab").is_none());
        assert!(VaultName::parse("1abc").is_none());
        assert!(VaultName::parse("abc-").is_none());
        assert!(VaultName::parse("a--bc").is_none());
        assert!(VaultName::parse(&"a".repeat(25)).is_none());
    }
}
