//! Everything an operation can fail with. The api crate turns these into Key Vault error bodies
//! in exactly one place (`keystead_api::error`).

use keystead_model::{Action, ApplyError, ObjectKind};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The request is malformed or a value is out of range.
    #[error("{0}")]
    BadParameter(String),
    /// No valid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// Authentication at the token endpoint failed (wrong client id or secret).
    #[error("invalid client credentials")]
    InvalidClient,
    /// Admin API credential missing or wrong.
    #[error("invalid admin token")]
    AdminUnauthorized,
    /// The caller's roles do not grant `action`.
    #[error("caller {caller} lacks {} on vault {vault}", .action.0)]
    Forbidden {
        caller: String,
        action: Action,
        vault: String,
    },
    /// The object version is disabled.
    #[error("{} {name} is disabled", .kind.noun())]
    Disabled { kind: ObjectKind, name: String },
    /// A key refused a cryptographic operation (disabled, outside nbf/exp, not in key_ops).
    #[error("the key refused the {operation} operation: {reason:?}")]
    KeyRefused {
        operation: &'static str,
        reason: crate::keys::KeyRefusal,
    },
    /// The vault named by the request's host does not exist.
    #[error("vault {0} was not found")]
    VaultNotFound(String),
    /// A deterministic refusal from the state machine (not found, conflict, protected…).
    #[error(transparent)]
    Refused(#[from] ApplyError),
    /// The backup blob is not one of ours, or was sealed under another key hierarchy.
    #[error("the backup blob is malformed or was not produced by this deployment")]
    BadBackup,
    /// No leader can be reached right now (election in progress, minority partition): the
    /// caller should retry shortly.
    #[error("the service is temporarily unavailable: {0}")]
    Unavailable(String),
    /// This region is not accepting writes: it is a secondary whose primary cannot be reached,
    /// or a primary that is fenced or has lost its region lease.
    #[error("region {region} is read-only: {detail}")]
    ReadOnly { region: String, detail: String },
    /// Storage, crypto or runtime failure: a server fault, never the caller's.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<keystead_store::StoreError> for CoreError {
    fn from(e: keystead_store::StoreError) -> Self {
        CoreError::Internal(e.to_string())
    }
}

impl From<keystead_crypto::CryptoError> for CoreError {
    fn from(e: keystead_crypto::CryptoError) -> Self {
        CoreError::Internal(e.to_string())
    }
}
