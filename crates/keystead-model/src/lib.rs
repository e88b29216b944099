//! Keystead's domain model: what a vault holds and the commands that change it.
//!
//! This crate is pure: no I/O, no clocks, no randomness and no wire JSON. Everything that is
//! non-deterministic (version ids, timestamps, sealed values) is decided *before* a [`Command`]
//! is built and travels inside it, so applying the same command log on any replica yields the
//! same state. The apply logic itself lives next to the tables in `keystead-store`; the rules it
//! enforces (name reuse, purge protection, ...) are the pure functions in [`rules`].

pub mod access;
pub mod command;
pub mod error;
pub mod key;
pub mod names;
pub mod object;
pub mod region;
pub mod rules;
pub mod vault;

pub use access::{Action, Principal, Role, RoleAssignment, Scope};
pub use command::{Applied, Command, Deployment};
pub use error::ApplyError;
pub use key::{
    Curve, KeyMaterial, KeyOp, KeyType, LifetimeAction, PublicKey, ReleasePolicy, RotationAction,
    RotationPolicy, RotationTrigger,
};
pub use names::{ObjectName, VaultName};
pub use object::{
    Attributes, AttributesPatch, Ciphertext, Deletion, ObjectKind, ObjectRecord, Payload,
    VersionRecord,
};
pub use region::{
    DivergenceRecord, DivergenceStatus, EpochStart, Origin, RegionRole, RegionState, StreamEntry,
};
pub use vault::{RecoveryLevel, VaultSettings};

/// Seconds since the Unix epoch: the only time unit on the wire and in the log.
pub type UnixTime = i64;
