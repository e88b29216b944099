//! Bearer tokens whose signature this node has already checked, so a client reusing its token
//! (every Azure SDK does, for up to an hour) costs one ECDSA verification per token instead of
//! one per request. On a small request such as an ES256 sign, verifying the token's signature
//! was about a third of the server's CPU.
//!
//! Only the signature check and the decoding of the claims are remembered. Everything else
//! `Node::authenticate` decides is decided again on every request from the cached claims and
//! the current state: expiry and not-before against the clock, issuer, tenant, audience, and
//! whether the principal still exists; `Node::authorize` reads the current role assignments.
//! So an expired token, a deleted principal or a removed role takes effect exactly as before.
//!
//! Entries are found by the SHA-256 of the token text (the token itself is not kept), and only
//! tokens that verified and have not expired are added. The verifier's keys are fixed for the
//! node's lifetime, so a signature once valid stays valid. At most `capacity` tokens are kept:
//! when full, expired ones are dropped, and if that frees nothing the map starts over (every
//! token in it was issued to a holder of a client secret, so this costs re-verification only).

use keystead_crypto::CryptoError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Most tokens remembered.
pub(crate) const CAPACITY: usize = 4096;

/// A verified token's `exp` and claims.
type Verified = (i64, Arc<Value>);

pub(crate) struct VerifiedTokens {
    /// By SHA-256 of the token.
    map: Mutex<HashMap<[u8; 32], Verified>>,
    capacity: usize,
}

impl VerifiedTokens {
    pub(crate) fn new(capacity: usize) -> VerifiedTokens {
        VerifiedTokens {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The claims of `token`, calling `verify` (signature and structure) only if this token has
    /// not been verified before. The caller still checks every claim.
    pub(crate) fn claims(
        &self,
        token: &str,
        now: i64,
        verify: impl FnOnce(&str) -> Result<Value, CryptoError>,
    ) -> Result<Arc<Value>, CryptoError> {
        let id = keystead_crypto::random::sha256(token.as_bytes());
        // A poisoned lock holds a consistent map (each update is one map operation).
        let lock = || self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, claims)) = lock().get(&id) {
            return Ok(claims.clone());
        }
        let claims = Arc::new(verify(token)?);
        let exp = claims.get("exp").and_then(Value::as_i64);
        if let Some(exp) = exp.filter(|exp| *exp > now) {
            let mut map = lock();
            if map.len() >= self.capacity {
                map.retain(|_, (exp, _)| *exp > now);
                if map.len() >= self.capacity {
                    map.clear();
                }
            }
            if self.capacity > 0 {
                map.insert(id, (exp, claims.clone()));
            }
        }
        Ok(claims)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::Cell;

    #[test]
    fn verifies_each_token_once_and_keeps_only_unexpired_ones() {
        let cache = VerifiedTokens::new(2);
        let calls = Cell::new(0);
        let verify = |exp: i64| {
            let calls = &calls;
            move |_: &str| {
                calls.set(calls.get() + 1);
                Ok(json!({ "exp": exp, "sub": "x" }))
            }
        };
        let claims = cache.claims("a.b.c", 100, verify(200)).unwrap();
        assert_eq!(claims["sub"], "x");
        cache.claims("a.b.c", 150, verify(200)).unwrap();
        assert_eq!(calls.get(), 1, "second use is not verified again");
        // Already expired when verified: returned (the caller refuses it), never kept.
        cache.claims("d.e.f", 100, verify(50)).unwrap();
        cache.claims("d.e.f", 100, verify(50)).unwrap();
        assert_eq!(calls.get(), 3);
        // A failed verification is not kept either.
        let bad = |_: &str| Err(CryptoError::InvalidToken("bad signature"));
        assert!(cache.claims("g.h.i", 100, bad).is_err());
        assert_eq!(cache.len(), 1);
        // Full: expired entries go first, then everything.
        cache.claims("j.k.l", 100, verify(120)).unwrap();
        cache.claims("m.n.o", 130, verify(300)).unwrap(); // j.k.l (exp 120) dropped
        assert_eq!(cache.len(), 2);
        cache.claims("p.q.r", 130, verify(300)).unwrap(); // none expired: cleared
        assert_eq!(cache.len(), 1);
    }
}

/// Through `Node::authenticate`: a remembered token is still refused once it expires, its
/// principal is deleted, or it is presented for another audience; role removal still applies.
#[cfg(test)]
mod node_tests {
    use crate::test_support::test_node;
    use crate::CoreError;
    use keystead_model::access::actions;
    use keystead_model::VaultName;

    const ISSUER_HOST: &str = "https://localhost:8443";
    const AUDIENCE: &str = "https://vault.localhost:8443";

    #[tokio::test]
    async fn remembered_tokens_are_still_checked_every_time() {
        let t = test_node().await;
        let node = &t.node;
        let issuer = format!("{ISSUER_HOST}/{}/v2.0", node.tenant_id());
        let scope = format!("{AUDIENCE}/.default");
        let client_id = &t.principal.principal.client_id;
        let secret = t.principal.client_secret.as_str();
        let token = node
            .issue_token(&issuer, client_id, secret, &scope)
            .await
            .unwrap()
            .token;
        let vault = VaultName::parse("demo").unwrap();
        let unauthorized = |r: Result<_, CoreError>| matches!(r, Err(CoreError::Unauthorized(_)));

        for _ in 0..2 {
            assert_eq!(node.authenticate(&token, AUDIENCE).unwrap(), t.caller);
        }
        assert_eq!(node.verified_tokens.len(), 1);
        assert!(unauthorized(
            node.authenticate(&token, "https://other.example")
        ));
        // A token differing in one signature character is verified (and refused), not matched.
        // (Well inside the signature: the last character carries unused bits.)
        let at = token.len() - 10;
        let swap = if &token[at..=at] == "A" { "B" } else { "A" };
        let mut forged = token.clone();
        forged.replace_range(at..=at, swap);
        assert!(unauthorized(node.authenticate(&forged, AUDIENCE)));

        // Roles are read on every request.
        let caller = node.authenticate(&token, AUDIENCE).unwrap();
        assert!(node
            .authorize(&caller, &vault, actions::KEY_SIGN, None)
            .is_ok());
        node.remove_role(&t.assignment_id).await.unwrap();
        let caller = node.authenticate(&token, AUDIENCE).unwrap();
        assert!(matches!(
            node.authorize(&caller, &vault, actions::KEY_SIGN, None),
            Err(CoreError::Forbidden { .. })
        ));

        // Expiry is checked against the clock.
        t.clock.advance(node.token_lifetime + 1);
        assert!(unauthorized(node.authenticate(&token, AUDIENCE)));
        t.clock.advance(-(node.token_lifetime + 1));
        assert!(node.authenticate(&token, AUDIENCE).is_ok());

        // A deleted principal's remembered token stops working at once.
        node.delete_principal(client_id).await.unwrap();
        assert!(unauthorized(node.authenticate(&token, AUDIENCE)));
    }
}
