//! Randomness and small hashing helpers shared by the rest of the workspace.
//!
//! Everything draws from `aws_lc_rs::rand::SystemRandom` (the OS CSPRNG via AWS-LC).
//! Buffers that may be used as secrets are returned in `Zeroizing` wrappers so they are
//! wiped when dropped.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::CryptoError;

/// Fills `buf` from the system CSPRNG.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptoError::Internal("system random number generator failed"))
}

/// Returns `len` bytes from the system CSPRNG.
pub fn random_bytes(len: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut buf = Zeroizing::new(vec![0u8; len]);
    fill(&mut buf)?;
    Ok(buf)
}

/// A new object version identifier: 32 lowercase hex characters (128 random bits),
/// the same shape Azure Key Vault uses for versions.
pub fn new_version_id() -> Result<String, CryptoError> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes)?;
    Ok(hex_lower(&bytes))
}

/// A random bearer-style token: `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> Result<Zeroizing<String>, CryptoError> {
    let raw = random_bytes(bytes)?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_slice())))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    // SHA-256 output is always 32 bytes, so this copy cannot be short.
    out.copy_from_slice(digest.as_ref());
    out
}

/// Compares two byte strings without leaking, through timing, where they differ.
/// (The length itself is not secret and is compared first.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Lowercase hex encoding (no external hex crate needed for these few call sites).
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_id_is_32_lowercase_hex() {
        let id = new_version_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(id, new_version_id().unwrap());
    }

    #[test]
    fn random_bytes_has_requested_length() {
        assert_eq!(random_bytes(0).unwrap().len(), 0);
        assert_eq!(random_bytes(48).unwrap().len(), 48);
    }

    #[test]
    fn random_token_is_base64url() {
        let t = random_token(32).unwrap();
        assert_eq!(t.len(), 43);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex_lower(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
