//! The replicated command: every mutation of Keystead's state is one of these, appended to the
//! log and then applied. Commands are self-contained (they carry every timestamp, version id and
//! sealed value they need) so applying is deterministic and a replayed log yields the same state.

use crate::{
    AttributesPatch, Ciphertext, ObjectKind, ObjectName, Principal, RoleAssignment, UnixTime,
    VaultName, VaultSettings, VersionRecord,
};
use serde::{Deserialize, Serialize};

/// Deployment-wide identity: the OAuth2 tenant, the token-signing key (sealed) and the admin
/// credential (hashed). Written once, by the first command of a fresh deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub tenant_id: String,
    pub token_signing_key: Ciphertext,
    pub admin_token_hash: String,
    pub created: UnixTime,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    InitDeployment(Deployment),

    CreateVault(VaultSettings),
    /// Turns purge protection on (it can never be turned off).
    EnablePurgeProtection {
        vault: VaultName,
    },
    /// Removes a vault, its objects and its role assignments.
    DeleteVault {
        vault: VaultName,
    },

    CreatePrincipal(Principal),
    DeletePrincipal {
        client_id: String,
    },
    AssignRole(RoleAssignment),
    RemoveRole {
        id: String,
    },

    /// Adds a new version to an object, creating the object if needed.
    PutVersion {
        vault: VaultName,
        kind: ObjectKind,
        name: ObjectName,
        version: VersionRecord,
    },
    /// Updates the mutable fields of one version (`None` = the latest).
    UpdateVersion {
        vault: VaultName,
        kind: ObjectKind,
        name: ObjectName,
        version: Option<String>,
        patch: AttributesPatch,
        at: UnixTime,
    },
    /// Soft-deletes an object (all versions).
    DeleteObject {
        vault: VaultName,
        kind: ObjectKind,
        name: ObjectName,
        at: UnixTime,
    },
    RecoverObject {
        vault: VaultName,
        kind: ObjectKind,
        name: ObjectName,
    },
    /// An explicit purge by a caller: refused under purge protection.
    PurgeObject {
        vault: VaultName,
        kind: ObjectKind,
        name: ObjectName,
    },
    /// Retention timer: removes every soft-deleted object whose scheduled purge date is `<= at`,
    /// purge protection notwithstanding. Proposed by the leader's background task.
    PurgeExpired {
        at: UnixTime,
    },
    /// Restores a backup: the object must not exist (active or deleted) in the target vault.
    RestoreObject {
        vault: VaultName,
        kind: ObjectKind,
        name: ObjectName,
        versions: Vec<VersionRecord>,
    },
    /// Updates one key version (`None` = the latest): attributes and tags like `UpdateVersion`,
    /// plus the key's permitted operations and release policy.
    UpdateKey {
        vault: VaultName,
        name: ObjectName,
        version: Option<String>,
        patch: AttributesPatch,
        key_ops: Option<Vec<crate::KeyOp>>,
        release_policy: Option<crate::ReleasePolicy>,
        at: UnixTime,
    },
    /// Adds a key version made by the rotation timer, only while `replaces` is still the latest
    /// version: timers on several nodes may propose the same rotation, and only the first one
    /// applies (the others are refused with `RotationSuperseded`).
    RotateKey {
        vault: VaultName,
        name: ObjectName,
        replaces: String,
        version: VersionRecord,
    },
    /// Sets (replaces) the rotation policy of an active key.
    SetRotationPolicy {
        vault: VaultName,
        name: ObjectName,
        policy: crate::RotationPolicy,
    },

    /// A vault command with who asked for it. Applies exactly like `command`; the origin is
    /// only kept in the region outbox (for divergence records).
    Attributed {
        origin: crate::region::Origin,
        command: Box<Command>,
    },

    // Region commands: local to one region, never part of the replication stream.
    /// Sets this region's topology view. `expected_epoch = None` is the first configuration
    /// (refused once one exists); otherwise refused unless the current epoch matches, so two
    /// racing role changes cannot both apply.
    SetRegion {
        expected_epoch: Option<u64>,
        state: crate::region::RegionState,
    },
    /// On a secondary: the primary's entries, applied in `seq` order (already applied ones are
    /// skipped; a gap is refused).
    Replicate {
        entries: Vec<crate::region::StreamEntry>,
    },
    /// On a secondary: replaces the vault state with the primary's at `seq` (catch-up after the
    /// primary compacted its outbox past this region's position, or after a divergence).
    InstallRegionSnapshot {
        seq: u64,
        epoch: u64,
        state: Vec<u8>,
    },
    /// Records a divergence, or updates its status once the operator decided.
    PutDivergence(crate::region::DivergenceRecord),
}

impl Command {
    /// A short, secret-free name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Command::InitDeployment(_) => "init_deployment",
            Command::CreateVault(_) => "create_vault",
            Command::EnablePurgeProtection { .. } => "enable_purge_protection",
            Command::DeleteVault { .. } => "delete_vault",
            Command::CreatePrincipal(_) => "create_principal",
            Command::DeletePrincipal { .. } => "delete_principal",
            Command::AssignRole(_) => "assign_role",
            Command::RemoveRole { .. } => "remove_role",
            Command::PutVersion { .. } => "put_version",
            Command::UpdateVersion { .. } => "update_version",
            Command::DeleteObject { .. } => "delete_object",
            Command::RecoverObject { .. } => "recover_object",
            Command::PurgeObject { .. } => "purge_object",
            Command::PurgeExpired { .. } => "purge_expired",
            Command::RestoreObject { .. } => "restore_object",
            Command::UpdateKey { .. } => "update_key",
            Command::SetRotationPolicy { .. } => "set_rotation_policy",
            Command::RotateKey { .. } => "rotate_key",
            Command::Attributed { command, .. } => command.label(),
            Command::SetRegion { .. } => "set_region",
            Command::Replicate { .. } => "replicate",
            Command::InstallRegionSnapshot { .. } => "install_region_snapshot",
            Command::PutDivergence(_) => "put_divergence",
        }
    }
}

impl Command {
    /// Region commands manage replication itself: they are applied only in the region that
    /// proposed them, are never streamed, and are accepted on a secondary.
    pub fn is_region_local(&self) -> bool {
        matches!(
            self,
            Command::SetRegion { .. }
                | Command::Replicate { .. }
                | Command::InstallRegionSnapshot { .. }
                | Command::PutDivergence(_)
        )
    }

    /// The command without its attribution.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Attributed { command, .. } => command.inner(),
            other => other,
        }
    }
}

/// What applying a command produced, so the proposer can answer without a racy re-read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Applied {
    Done,
    /// The object after the change and the version the command touched (the latest one for
    /// object-wide commands).
    Object {
        object: crate::ObjectRecord,
        version: VersionRecord,
    },
    Vault(VaultSettings),
    Purged {
        count: u64,
    },
}
