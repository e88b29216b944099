//! The single error type of this crate.
//!
//! Variants are deliberately coarse: callers need to know *what kind* of thing went
//! wrong (bad key, wrong key, failed authentication, bad token), never details that could
//! help an attacker or leak secret material. No variant ever carries key bytes,
//! plaintext or token text.

/// Errors returned by keystead-crypto.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Key material is malformed (wrong length, bad encoding, unparsable key).
    #[error("invalid key material")]
    InvalidKey,
    /// The sealed box was produced under a different key-encryption key.
    #[error("sealed box was encrypted under a different key-encryption key")]
    WrongKek,
    /// Authenticated decryption failed: tampered data, wrong AAD or malformed box.
    #[error("decryption failed")]
    Decrypt,
    /// A token could not be produced or was rejected; the reason is a fixed string
    /// and never contains token text.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// Reading or writing a key file failed.
    #[error("key file I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Certificate generation or parsing failed.
    #[error("certificate error: {0}")]
    Pki(String),
    /// The caller's input cannot be used (wrong digest length, IV size, plaintext too long);
    /// the reason is a fixed string.
    #[error("{0}")]
    InvalidInput(&'static str),
    /// An unexpected failure inside the crypto library (e.g. the system RNG failed).
    #[error("internal cryptographic failure: {0}")]
    Internal(&'static str),
}
