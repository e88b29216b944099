//! keystead-crypto: every cryptographic operation Keystead performs, in one place.
//!
//! All primitives come from `aws-lc-rs` (X.509 generation goes through `rcgen` on its
//! aws-lc-rs backend), so the rest of the workspace never touches key material or
//! algorithm choices directly:
//!
//! - [`envelope`]: KEK/DEK envelope encryption (AES-256-GCM) for data at rest.
//! - [`random`]: random bytes, identifiers and tokens; hashing and constant-time compare.
//! - [`password`]: slow (PBKDF2) hashing of client secrets and admin tokens.
//! - [`token`]: ES256 JWT access tokens and JWKS.
//! - [`keys`]: vault keys (RSA, EC, AES): generation, JWK import and Key Vault's operations.
//! - [`pki`]: a local CA and TLS certificates for dev mode and node-to-node mTLS.

pub mod envelope;
pub mod error;
pub mod keys;
pub mod password;
pub mod pki;
pub mod random;
mod rsa_crt;
pub mod token;

pub use envelope::{Kek, SealedBox};
pub use error::CryptoError;
