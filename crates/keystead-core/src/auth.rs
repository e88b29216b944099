//! Authentication and authorization: Keystead as its own OAuth2 authority (client-credentials
//! tokens signed with the deployment's key), bearer-token validation, and RBAC checks against
//! the built-in Key Vault roles.

use crate::access_cache::GrantKey;
use crate::{CoreError, Node};
use keystead_crypto::password;
use keystead_model::{Action, ObjectKind, ObjectName, VaultName, VaultSettings};
use serde_json::{json, Value};

/// An issued access token.
pub struct AccessToken {
    pub token: String,
    pub expires_in: i64,
}

/// Who is calling, once their token has been validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
}

impl Node {
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The public keys tokens are signed with, as a JWKS document.
    pub fn jwks(&self) -> Value {
        self.verifier.to_jwks()
    }

    /// The client-credentials grant. `issuer` is the authority URL the client used
    /// (`https://host:port/<tenant>/v2.0`); `scope` is `<resource>/.default`, and the resource
    /// becomes the token's audience.
    pub async fn issue_token(
        &self,
        issuer: &str,
        client_id: &str,
        client_secret: &str,
        scope: &str,
    ) -> Result<AccessToken, CoreError> {
        let audience = scope
            .split_whitespace()
            .find_map(|s| s.strip_suffix("/.default"))
            .filter(|aud| aud.starts_with("https://"))
            .ok_or_else(|| {
                CoreError::BadParameter("scope must be '<https resource>/.default'".into())
            })?
            .to_string();
        let principal = self
            .read()?
            .principal(client_id)?
            .ok_or(CoreError::InvalidClient)?;
        // PBKDF2 is deliberately slow: run it off the async workers.
        let secret = zeroize::Zeroizing::new(client_secret.to_string());
        let hash = principal.secret_hash.clone();
        let ok = tokio::task::spawn_blocking(move || password::verify_secret(&secret, &hash))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        if !ok {
            return Err(CoreError::InvalidClient);
        }
        let now = self.now();
        let claims = json!({
            "iss": issuer,
            "aud": audience,
            "sub": client_id,
            "appid": client_id,
            "oid": client_id,
            "tid": self.tenant_id,
            "iat": now,
            "nbf": now - 60,
            "exp": now + self.token_lifetime,
            "ver": "2.0",
        });
        Ok(AccessToken {
            token: self.signer.sign(&claims)?,
            expires_in: self.token_lifetime,
        })
    }

    /// Validates a bearer token for `audience` (the resource of the challenge the vault sends).
    pub fn authenticate(&self, token: &str, audience: &str) -> Result<Caller, CoreError> {
        let unauthorized = |why: &str| CoreError::Unauthorized(why.to_string());
        let now = self.now();
        // The signature is checked once per token; every claim below is checked every time.
        let claims = self
            .verified_tokens
            .claims(token, now, |token| self.verifier.verify(token))
            .map_err(|_| unauthorized("AKV10000: Request is missing a valid Bearer token."))?;
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        if number("exp").is_none_or(|exp| exp <= now) {
            return Err(unauthorized("AKV10022: The token has expired."));
        }
        if number("nbf").is_some_and(|nbf| nbf > now + 300) {
            return Err(unauthorized("The token is not yet valid."));
        }
        let issuer_ok = claims
            .get("iss")
            .and_then(Value::as_str)
            .is_some_and(|iss| iss.starts_with("https://") && iss.ends_with(&self.issuer_suffix));
        if !issuer_ok || claims.get("tid").and_then(Value::as_str) != Some(&self.tenant_id) {
            return Err(unauthorized("AKV10032: Invalid issuer."));
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud.trim_end_matches('/') == audience,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str().map(|a| a.trim_end_matches('/')) == Some(audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(unauthorized("AKV10022: Invalid audience."));
        }
        let client_id = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| unauthorized("The token has no subject."))?;
        // A deleted principal's outstanding tokens stop working at once. (The generation is
        // loaded before the read: see `access_cache`.)
        let generation = self.store.generation();
        if !self.access.knows_principal(generation, client_id) {
            if self.read()?.principal(client_id)?.is_none() {
                return Err(unauthorized("The token's principal no longer exists."));
            }
            self.access.remember_principal(generation, client_id);
        }
        Ok(Caller {
            client_id: client_id.to_string(),
        })
    }

    /// Checks that `vault` exists and that `caller` holds a role granting `action` at a scope
    /// covering `object` (or the vault). Returns the vault's settings.
    pub fn authorize(
        &self,
        caller: &Caller,
        vault: &VaultName,
        action: Action,
        object: Option<(ObjectKind, &ObjectName)>,
    ) -> Result<VaultSettings, CoreError> {
        // A grant decided at this generation still holds (see `access_cache`); the generation
        // is loaded before the read a new decision is made from.
        let generation = self.store.generation();
        let key = GrantKey {
            client_id: caller.client_id.clone(),
            vault: vault.clone(),
            action,
            object: object.map(|(kind, name)| (kind, name.clone())),
        };
        if let Some(settings) = self.access.granted(generation, &key) {
            return Ok(settings);
        }
        let read = self.read()?;
        let settings = read
            .vault(vault)?
            .ok_or_else(|| CoreError::VaultNotFound(vault.to_string()))?;
        let granted = read
            .role_assignments_of(&caller.client_id)?
            .iter()
            .any(|a| {
                a.principal_id == caller.client_id
                    && a.scope.covers(vault, object)
                    && a.role.allows(action)
            });
        if granted {
            self.access
                .remember_grant(generation, key, settings.clone());
            Ok(settings)
        } else {
            Err(CoreError::Forbidden {
                caller: caller.client_id.clone(),
                action,
                vault: vault.to_string(),
            })
        }
    }

    /// Checks the admin API's bearer credential.
    pub async fn verify_admin(&self, token: &str) -> Result<(), CoreError> {
        let deployment = self
            .read()?
            .deployment()?
            .ok_or_else(|| CoreError::Internal("deployment not initialized".into()))?;
        let token = zeroize::Zeroizing::new(token.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            password::verify_secret(&token, &deployment.admin_token_hash)
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?;
        if ok {
            Ok(())
        } else {
            Err(CoreError::AdminUnauthorized)
        }
    }
}
