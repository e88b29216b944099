//! Vault-level settings: soft-delete retention and purge protection.

use crate::{UnixTime, VaultName};
use serde::{Deserialize, Serialize};

/// Retention bounds for soft-deleted objects, in days (as in Azure).
pub const MIN_RETENTION_DAYS: u32 = 7;
pub const MAX_RETENTION_DAYS: u32 = 90;
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultSettings {
    pub name: VaultName,
    pub retention_days: u32,
    /// Once on, never off: purges are refused and objects leave only when retention ends.
    pub purge_protection: bool,
    pub created: UnixTime,
}

impl VaultSettings {
    pub fn recovery_level(&self) -> RecoveryLevel {
        match (
            self.retention_days == MAX_RETENTION_DAYS,
            self.purge_protection,
        ) {
            (true, false) => RecoveryLevel::RecoverablePurgeable,
            (true, true) => RecoveryLevel::Recoverable,
            (false, false) => RecoveryLevel::CustomizedRecoverablePurgeable,
            (false, true) => RecoveryLevel::CustomizedRecoverable,
        }
    }

    pub fn retention_seconds(&self) -> i64 {
        i64::from(self.retention_days) * 86_400
    }
}

/// Key Vault's `recoveryLevel` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryLevel {
    RecoverablePurgeable,
    Recoverable,
    CustomizedRecoverablePurgeable,
    CustomizedRecoverable,
}

impl RecoveryLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryLevel::RecoverablePurgeable => "Recoverable+Purgeable",
            RecoveryLevel::Recoverable => "Recoverable",
            RecoveryLevel::CustomizedRecoverablePurgeable => "CustomizedRecoverable+Purgeable",
            RecoveryLevel::CustomizedRecoverable => "CustomizedRecoverable",
        }
    }
}
