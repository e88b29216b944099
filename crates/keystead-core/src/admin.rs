//! Deployment administration behind the admin API: vaults, service principals and role
//! assignments. Authentication of the admin caller happens in the api crate
//! (`Node::verify_admin`) before any of these run.

use crate::node::new_guid;
use crate::{CoreError, Node};
use keystead_crypto::{password, random};
use keystead_model::vault::{DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS, MIN_RETENTION_DAYS};
use keystead_model::{
    Applied, Command, ObjectKind, ObjectName, Principal, Role, RoleAssignment, Scope, VaultName,
    VaultSettings,
};
use zeroize::Zeroizing;

/// A principal just created, with the only copy of its client secret.
pub struct NewPrincipal {
    pub principal: Principal,
    pub client_secret: Zeroizing<String>,
}

impl Node {
    pub async fn create_vault(
        &self,
        name: &str,
        retention_days: Option<u32>,
        purge_protection: bool,
    ) -> Result<VaultSettings, CoreError> {
        let name = VaultName::parse(name).ok_or_else(|| {
            CoreError::BadParameter(
                "vault names are 3-24 letters, digits and single hyphens, starting with a letter"
                    .into(),
            )
        })?;
        let retention_days = retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if !(MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&retention_days) {
            return Err(CoreError::BadParameter(format!(
                "retention must be {MIN_RETENTION_DAYS}-{MAX_RETENTION_DAYS} days"
            )));
        }
        let settings = VaultSettings {
            name,
            retention_days,
            purge_protection,
            created: self.now(),
        };
        self.propose(Command::CreateVault(settings.clone())).await?;
        Ok(settings)
    }

    pub fn vaults(&self) -> Result<Vec<VaultSettings>, CoreError> {
        Ok(self.read()?.vaults()?)
    }

    pub fn vault(&self, name: &VaultName) -> Result<Option<VaultSettings>, CoreError> {
        Ok(self.read()?.vault(name)?)
    }

    pub async fn enable_purge_protection(
        &self,
        name: &VaultName,
    ) -> Result<VaultSettings, CoreError> {
        match self
            .propose(Command::EnablePurgeProtection {
                vault: name.clone(),
            })
            .await?
        {
            Applied::Vault(settings) => Ok(settings),
            other => Err(CoreError::Internal(format!("unexpected {other:?}"))),
        }
    }

    pub async fn delete_vault(&self, name: &VaultName) -> Result<(), CoreError> {
        self.propose(Command::DeleteVault {
            vault: name.clone(),
        })
        .await
        .map(|_| ())
    }

    /// Creates a service principal with a fresh random client secret.
    pub async fn create_principal(&self, display_name: &str) -> Result<NewPrincipal, CoreError> {
        if display_name.is_empty() || display_name.len() > 256 {
            return Err(CoreError::BadParameter(
                "principal names are 1-256 characters".into(),
            ));
        }
        // A letter prefix: a credential starting with '-' would read as a flag on command lines.
        let client_secret = Zeroizing::new(format!("kss_{}", random::random_token(32)?.as_str()));
        let secret_for_hash = client_secret.clone();
        let secret_hash =
            tokio::task::spawn_blocking(move || password::hash_secret(&secret_for_hash))
                .await
                .map_err(|e| CoreError::Internal(e.to_string()))??;
        let principal = Principal {
            client_id: new_guid()?,
            display_name: display_name.to_string(),
            secret_hash,
            created: self.now(),
        };
        self.propose(Command::CreatePrincipal(principal.clone()))
            .await?;
        Ok(NewPrincipal {
            principal,
            client_secret,
        })
    }

    pub fn principals(&self) -> Result<Vec<Principal>, CoreError> {
        Ok(self.read()?.principals()?)
    }

    pub async fn delete_principal(&self, client_id: &str) -> Result<(), CoreError> {
        self.propose(Command::DeletePrincipal {
            client_id: client_id.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Assigns `role` to a principal on a vault, or on one object when `object_scope` is
    /// `/secrets/NAME` (or `/keys/NAME`, `/certificates/NAME`).
    pub async fn assign_role(
        &self,
        principal_id: &str,
        role: &str,
        vault: &str,
        object_scope: Option<&str>,
    ) -> Result<RoleAssignment, CoreError> {
        let role = Role::from_name(role).ok_or_else(|| {
            let known: Vec<_> = Role::ALL.iter().map(|r| r.display_name()).collect();
            CoreError::BadParameter(format!("unknown role; known roles: {}", known.join(", ")))
        })?;
        let vault = VaultName::parse(vault)
            .ok_or_else(|| CoreError::BadParameter("invalid vault name".into()))?;
        let object = match object_scope.map(|s| s.trim_matches('/')) {
            None | Some("") => None,
            Some(scope) => Some(parse_object_scope(scope)?),
        };
        let assignment = RoleAssignment {
            id: new_guid()?,
            principal_id: principal_id.to_string(),
            role,
            scope: Scope { vault, object },
            created: self.now(),
        };
        self.propose(Command::AssignRole(assignment.clone()))
            .await?;
        Ok(assignment)
    }

    pub fn role_assignments(&self) -> Result<Vec<RoleAssignment>, CoreError> {
        Ok(self.read()?.role_assignments()?)
    }

    pub async fn remove_role(&self, id: &str) -> Result<(), CoreError> {
        self.propose(Command::RemoveRole { id: id.to_string() })
            .await
            .map(|_| ())
    }
}

fn parse_object_scope(scope: &str) -> Result<(ObjectKind, ObjectName), CoreError> {
    let bad = || {
        CoreError::BadParameter(
            "scope must be /secrets/NAME, /keys/NAME or /certificates/NAME".into(),
        )
    };
    let (collection, name) = scope.split_once('/').ok_or_else(bad)?;
    let kind = match collection {
        "secrets" => ObjectKind::Secret,
        "keys" => ObjectKind::Key,
        "certificates" => ObjectKind::Certificate,
        _ => return Err(bad()),
    };
    Ok((kind, ObjectName::parse(name).ok_or_else(bad)?))
}
