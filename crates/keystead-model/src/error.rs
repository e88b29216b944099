//! Why a command could not be applied. These are deterministic outcomes of applying a command
//! to a state — every replica reaches the same one — and leave the state unchanged.
//! The api crate maps them to Key Vault error bodies.

use crate::ObjectKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("vault {0} was not found")]
    VaultNotFound(String),
    #[error("vault {0} already exists")]
    VaultExists(String),
    #[error("vault {0} has purge protection and still holds objects")]
    VaultProtected(String),
    #[error("{} {name} was not found", .kind.noun())]
    ObjectNotFound { kind: ObjectKind, name: String },
    #[error("{} {name} version {version} was not found", .kind.noun())]
    VersionNotFound {
        kind: ObjectKind,
        name: String,
        version: String,
    },
    #[error("deleted {} {name} was not found", .kind.noun())]
    DeletedObjectNotFound { kind: ObjectKind, name: String },
    #[error("{} {name} is deleted but recoverable", .kind.noun())]
    DeletedButRecoverable { kind: ObjectKind, name: String },
    #[error("{} {name} already exists", .kind.noun())]
    ObjectExists { kind: ObjectKind, name: String },
    #[error("{} {name} version {version} already exists", .kind.noun())]
    VersionExists {
        kind: ObjectKind,
        name: String,
        version: String,
    },
    #[error("purge protection is enabled for vault {vault}")]
    PurgeProtected { vault: String },
    #[error("principal {0} was not found")]
    PrincipalNotFound(String),
    #[error("principal {0} already exists")]
    PrincipalExists(String),
    #[error("role assignment {0} was not found")]
    RoleAssignmentNotFound(String),
    #[error("role assignment {0} already exists")]
    RoleAssignmentExists(String),
    #[error("the deployment is already initialized")]
    AlreadyInitialized,
    #[error("key {name} was rotated already (latest version is no longer {replaces})")]
    RotationSuperseded { name: String, replaces: String },
    #[error("invalid command: {0}")]
    Invalid(String),
    /// Refused by the region state: a write on a secondary or a fenced primary, a stale epoch,
    /// a gap in the replication stream.
    #[error("{0}")]
    Region(String),
}
