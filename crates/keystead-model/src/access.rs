//! Who may do what: service principals, Key Vault's built-in data-plane roles, the data actions
//! they grant, and role assignments scoped to a vault or to one object in it.
//!
//! Action strings are Azure's data-action names so that a 403 names exactly what Azure would.

use crate::{ObjectKind, ObjectName, UnixTime, VaultName};
use serde::{Deserialize, Serialize};

/// A data action, e.g. `Microsoft.KeyVault/vaults/secrets/getSecret/action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Action(pub &'static str);

/// Data actions used by the data plane.
pub mod actions {
    use super::Action;
    pub const SECRET_GET: Action = Action("Microsoft.KeyVault/vaults/secrets/getSecret/action");
    pub const SECRET_SET: Action = Action("Microsoft.KeyVault/vaults/secrets/setSecret/action");
    pub const SECRET_READ_METADATA: Action =
        Action("Microsoft.KeyVault/vaults/secrets/readMetadata/action");
    pub const SECRET_UPDATE: Action = Action("Microsoft.KeyVault/vaults/secrets/update/action");
    pub const SECRET_DELETE: Action = Action("Microsoft.KeyVault/vaults/secrets/delete");
    pub const SECRET_RECOVER: Action = Action("Microsoft.KeyVault/vaults/secrets/recover/action");
    pub const SECRET_PURGE: Action = Action("Microsoft.KeyVault/vaults/secrets/purge/action");
    pub const SECRET_BACKUP: Action = Action("Microsoft.KeyVault/vaults/secrets/backup/action");
    pub const SECRET_RESTORE: Action = Action("Microsoft.KeyVault/vaults/secrets/restore/action");

    pub const KEY_READ: Action = Action("Microsoft.KeyVault/vaults/keys/read");
    pub const KEY_CREATE: Action = Action("Microsoft.KeyVault/vaults/keys/create/action");
    pub const KEY_IMPORT: Action = Action("Microsoft.KeyVault/vaults/keys/import/action");
    pub const KEY_UPDATE: Action = Action("Microsoft.KeyVault/vaults/keys/update/action");
    pub const KEY_DELETE: Action = Action("Microsoft.KeyVault/vaults/keys/delete");
    pub const KEY_BACKUP: Action = Action("Microsoft.KeyVault/vaults/keys/backup/action");
    pub const KEY_RESTORE: Action = Action("Microsoft.KeyVault/vaults/keys/restore/action");
    pub const KEY_RECOVER: Action = Action("Microsoft.KeyVault/vaults/keys/recover/action");
    pub const KEY_PURGE: Action = Action("Microsoft.KeyVault/vaults/keys/purge/action");
    pub const KEY_ENCRYPT: Action = Action("Microsoft.KeyVault/vaults/keys/encrypt/action");
    pub const KEY_DECRYPT: Action = Action("Microsoft.KeyVault/vaults/keys/decrypt/action");
    pub const KEY_WRAP: Action = Action("Microsoft.KeyVault/vaults/keys/wrap/action");
    pub const KEY_UNWRAP: Action = Action("Microsoft.KeyVault/vaults/keys/unwrap/action");
    pub const KEY_SIGN: Action = Action("Microsoft.KeyVault/vaults/keys/sign/action");
    pub const KEY_VERIFY: Action = Action("Microsoft.KeyVault/vaults/keys/verify/action");
    pub const KEY_ROTATE: Action = Action("Microsoft.KeyVault/vaults/keys/rotate/action");
    pub const KEY_ROTATION_POLICY_READ: Action =
        Action("Microsoft.KeyVault/vaults/keyrotationpolicies/read");
    pub const KEY_ROTATION_POLICY_WRITE: Action =
        Action("Microsoft.KeyVault/vaults/keyrotationpolicies/write");
    /// Random bytes from the vault (Azure offers `/rng` on Managed HSM only; only roles with
    /// the vault-wide wildcard, i.e. Key Vault Administrator, hold this here).
    pub const RNG: Action = Action("Microsoft.KeyVault/vaults/rng/action");
}

/// Key Vault's built-in data-plane roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Administrator,
    Reader,
    SecretsOfficer,
    SecretsUser,
    CryptoOfficer,
    CryptoUser,
    CryptoServiceEncryptionUser,
    CertificatesOfficer,
    CertificateUser,
}

const VAULTS: &str = "Microsoft.KeyVault/vaults/";

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Administrator,
        Role::Reader,
        Role::SecretsOfficer,
        Role::SecretsUser,
        Role::CryptoOfficer,
        Role::CryptoUser,
        Role::CryptoServiceEncryptionUser,
        Role::CertificatesOfficer,
        Role::CertificateUser,
    ];

    /// The role's Azure display name, e.g. "Key Vault Secrets User".
    pub fn display_name(self) -> &'static str {
        match self {
            Role::Administrator => "Key Vault Administrator",
            Role::Reader => "Key Vault Reader",
            Role::SecretsOfficer => "Key Vault Secrets Officer",
            Role::SecretsUser => "Key Vault Secrets User",
            Role::CryptoOfficer => "Key Vault Crypto Officer",
            Role::CryptoUser => "Key Vault Crypto User",
            Role::CryptoServiceEncryptionUser => "Key Vault Crypto Service Encryption User",
            Role::CertificatesOfficer => "Key Vault Certificates Officer",
            Role::CertificateUser => "Key Vault Certificate User",
        }
    }

    /// Parses a display name, case-insensitively, with or without the "Key Vault " prefix.
    pub fn from_name(raw: &str) -> Option<Role> {
        let wanted = raw.trim().to_ascii_lowercase();
        Role::ALL.into_iter().find(|role| {
            let full = role.display_name().to_ascii_lowercase();
            full == wanted || full.strip_prefix("key vault ") == Some(wanted.as_str())
        })
    }

    /// The data actions this role grants, as Azure's role definitions list them (a trailing
    /// `*` matches any suffix).
    fn data_actions(self) -> &'static [&'static str] {
        match self {
            Role::Administrator => &["Microsoft.KeyVault/vaults/*"],
            Role::Reader => &[
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                "Microsoft.KeyVault/vaults/keys/read",
                "Microsoft.KeyVault/vaults/certificates/read",
                "Microsoft.KeyVault/vaults/certificatecas/read",
                "Microsoft.KeyVault/vaults/certificatecontacts/read",
                "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
            ],
            Role::SecretsOfficer => &["Microsoft.KeyVault/vaults/secrets/*"],
            Role::SecretsUser => &[
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            ],
            Role::CryptoOfficer => &[
                "Microsoft.KeyVault/vaults/keys/*",
                "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
            ],
            Role::CryptoUser => &[
                "Microsoft.KeyVault/vaults/keys/read",
                "Microsoft.KeyVault/vaults/keys/update/action",
                "Microsoft.KeyVault/vaults/keys/backup/action",
                "Microsoft.KeyVault/vaults/keys/encrypt/action",
                "Microsoft.KeyVault/vaults/keys/decrypt/action",
                "Microsoft.KeyVault/vaults/keys/wrap/action",
                "Microsoft.KeyVault/vaults/keys/unwrap/action",
                "Microsoft.KeyVault/vaults/keys/sign/action",
                "Microsoft.KeyVault/vaults/keys/verify/action",
            ],
            Role::CryptoServiceEncryptionUser => &[
                "Microsoft.KeyVault/vaults/keys/read",
                "Microsoft.KeyVault/vaults/keys/wrap/action",
                "Microsoft.KeyVault/vaults/keys/unwrap/action",
            ],
            Role::CertificatesOfficer => &[
                "Microsoft.KeyVault/vaults/certificatecas/*",
                "Microsoft.KeyVault/vaults/certificates/*",
                "Microsoft.KeyVault/vaults/certificatecontacts/*",
            ],
            Role::CertificateUser => &[
                "Microsoft.KeyVault/vaults/certificates/read",
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                "Microsoft.KeyVault/vaults/keys/read",
            ],
        }
    }

    pub fn allows(self, action: Action) -> bool {
        debug_assert!(action.0.starts_with(VAULTS));
        self.data_actions()
            .iter()
            .any(|granted| match granted.strip_suffix('*') {
                Some(prefix) => action.0.starts_with(prefix),
                None => *granted == action.0,
            })
    }
}

/// Where an assignment applies: a whole vault, or one object in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub vault: VaultName,
    pub object: Option<(ObjectKind, ObjectName)>,
}

impl Scope {
    /// Does this scope cover `object` (or the vault itself when `object` is `None`)?
    pub fn covers(&self, vault: &VaultName, object: Option<(ObjectKind, &ObjectName)>) -> bool {
        if &self.vault != vault {
            return false;
        }
        match (&self.object, object) {
            (None, _) => true,
            (Some((kind, name)), Some((other_kind, other_name))) => {
                *kind == other_kind && name.key() == other_name.key()
            }
            (Some(_), None) => false,
        }
    }

    /// Azure's relative scope string: `/` or `/secrets/NAME`.
    pub fn relative(&self) -> String {
        match &self.object {
            None => "/".to_string(),
            Some((kind, name)) => format!("/{}/{}", kind.collection(), name),
        }
    }
}

/// A service principal that authenticates with a client secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub client_id: String,
    pub display_name: String,
    /// Slow hash of the client secret (never the secret itself).
    pub secret_hash: String,
    pub created: UnixTime,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub id: String,
    pub principal_id: String,
    pub role: Role,
    pub scope: Scope,
    pub created: UnixTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_azure_grants() {
        use actions::*;
        assert!(Role::Administrator.allows(SECRET_PURGE));
        assert!(Role::SecretsUser.allows(SECRET_GET));
        assert!(!Role::SecretsUser.allows(SECRET_SET));
        assert!(Role::Reader.allows(SECRET_READ_METADATA));
        assert!(!Role::Reader.allows(SECRET_GET));
        assert!(Role::SecretsOfficer.allows(SECRET_DELETE));
        assert!(!Role::CryptoOfficer.allows(SECRET_GET));
        assert!(Role::CertificateUser.allows(SECRET_GET));
        assert!(Role::CryptoOfficer.allows(KEY_CREATE));
        assert!(Role::CryptoOfficer.allows(KEY_ROTATION_POLICY_WRITE));
        assert!(Role::CryptoUser.allows(KEY_SIGN));
        assert!(!Role::CryptoUser.allows(KEY_CREATE));
        assert!(Role::CryptoServiceEncryptionUser.allows(KEY_UNWRAP));
        assert!(!Role::CryptoServiceEncryptionUser.allows(KEY_SIGN));
        assert!(Role::Reader.allows(KEY_READ));
        assert!(!Role::Reader.allows(KEY_DECRYPT));
        assert!(Role::Administrator.allows(RNG));
    }

    #[test]
    fn role_names_parse() {
        assert_eq!(
            Role::from_name("Key Vault Secrets User"),
            Some(Role::SecretsUser)
        );
        assert_eq!(Role::from_name("secrets user"), Some(Role::SecretsUser));
        assert_eq!(Role::from_name("Owner"), None);
    }

    #[test]
    fn object_scope() {
        let vault = VaultName::parse("demo").unwrap();
        let a = ObjectName::parse("A").unwrap();
        let b = ObjectName::parse("b").unwrap();
        let scope = Scope {
            vault: vault.clone(),
            object: Some((ObjectKind::Secret, a.clone())),
        };
        assert!(scope.covers(
            &vault,
            Some((ObjectKind::Secret, &ObjectName::parse("a").unwrap()))
        ));
        assert!(!scope.covers(&vault, Some((ObjectKind::Secret, &b))));
        assert!(!scope.covers(&vault, None));
        assert_eq!(scope.relative(), "/secrets/A");
    }
}
