//! JWT access tokens (RFC 7519) signed with ES256 (RFC 7518: ECDSA P-256 / SHA-256,
//! fixed-width `r || s` signature), plus the JWKS form of the verification keys.
//!
//! Only what Keystead needs: the issuer signs with one key, verifiers may trust several
//! (key rotation, other cluster nodes). Verification here covers the cryptographic
//! envelope only — structure, algorithm, key id, signature. Time and audience claims
//! (`exp`, `nbf`, `aud`, `iss`) are checked by the caller against its own clock and
//! configuration.
//!
//! Error reasons are fixed strings; token text never ends up in an error or a log.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::random::sha256;
use crate::CryptoError;

/// The only algorithm we issue or accept.
const ALG: &str = "ES256";
/// Uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
const POINT_LEN: usize = 65;
const COORD_LEN: usize = 32;
/// Fixed-width ES256 signature: r || s.
const SIG_LEN: usize = 64;
/// Length of a key id (characters of base64url).
const KID_LEN: usize = 22;
/// Tokens longer than this are rejected before any decoding work: ours are a few
/// hundred bytes, and an unauthenticated caller should not make us parse megabytes.
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Signs access tokens with an ECDSA P-256 private key.
pub struct TokenSigner {
    key_pair: EcdsaKeyPair,
    kid: String,
}

impl fmt::Debug for TokenSigner {
    // Only the key id: the private key must never be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Generates a new P-256 private key, returned as PKCS#8 DER for the caller to store.
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| CryptoError::Internal("ECDSA key generation failed"))?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// Loads a signer from a PKCS#8 DER P-256 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<TokenSigner, CryptoError> {
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| CryptoError::InvalidKey)?;
        let kid = kid_for_point(key_pair.public_key().as_ref());
        Ok(TokenSigner { key_pair, kid })
    }

    /// Key id: the first 22 characters of base64url(SHA-256(uncompressed public point)).
    /// Derived from the key, so it is stable across restarts and identical on every node
    /// that holds the same key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` (which must be a JSON object) into a compact JWS
    /// `header.payload.signature`, header `{"alg":"ES256","typ":"JWT","kid":...}`.
    pub fn sign(&self, claims: &Value) -> Result<String, CryptoError> {
        if !claims.is_object() {
            return Err(CryptoError::InvalidToken("claims must be a JSON object"));
        }
        let header = json!({ "alg": ALG, "typ": "JWT", "kid": self.kid });
        let header = serde_json::to_vec(&header)
            .map_err(|_| CryptoError::InvalidToken("header not serializable"))?;
        let payload = serde_json::to_vec(claims)
            .map_err(|_| CryptoError::InvalidToken("claims not serializable"))?;

        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .key_pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| CryptoError::Internal("ECDSA signing failed"))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// The public key as a JWK (RFC 7517/7518), for publishing in a JWKS document.
    pub fn public_jwk(&self) -> Value {
        jwk_for_point(self.key_pair.public_key().as_ref(), &self.kid)
    }

    /// A verifier trusting exactly this signer's public key.
    pub fn verifier(&self) -> TokenVerifier {
        let point = self.key_pair.public_key().as_ref().to_vec();
        let mut verifier = TokenVerifier { keys: Vec::new() };
        // The point comes from a valid private key, so parsing cannot reasonably fail;
        // if it somehow did, the verifier simply trusts nothing (fails closed).
        if let Ok(key) = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point) {
            verifier.keys.push(VerifierKey {
                kid: self.kid.clone(),
                point,
                key,
            });
        }
        verifier
    }
}

/// Verifies ES256 tokens against a set of trusted public keys, looked up by `kid`.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Vec<VerifierKey>,
}

#[derive(Clone)]
struct VerifierKey {
    kid: String,
    /// Uncompressed point, kept for re-publishing as a JWK.
    point: Vec<u8>,
    /// Parsed (and thereby validated on-curve) once, up front.
    key: ParsedPublicKey,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenVerifier {
    /// Builds a verifier from a JWKS document `{"keys":[...]}`. Keys other than EC P-256
    /// for ES256 signatures, and malformed keys, are skipped (RFC 7517 §5 lets a JWKS
    /// consumer ignore keys it does not understand). A key without `kid` gets the same
    /// derived id a [`TokenSigner`] would use. If two keys share a `kid`, the first wins.
    ///
    /// Fails with [`CryptoError::InvalidKey`] if `keys` is missing or no usable key
    /// remains, because a verifier that trusts nothing is almost certainly a
    /// configuration mistake.
    pub fn from_jwks(jwks: &Value) -> Result<TokenVerifier, CryptoError> {
        let list = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(CryptoError::InvalidKey)?;
        let mut verifier = TokenVerifier { keys: Vec::new() };
        for jwk in list {
            if let Some(key) = parse_jwk(jwk) {
                if !verifier.keys.iter().any(|k| k.kid == key.kid) {
                    verifier.keys.push(key);
                }
            }
        }
        if verifier.keys.is_empty() {
            return Err(CryptoError::InvalidKey);
        }
        Ok(verifier)
    }

    /// The trusted keys as a JWKS document `{"keys":[...]}`.
    pub fn to_jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| jwk_for_point(&k.point, &k.kid))
            .collect();
        json!({ "keys": keys })
    }

    /// Ids of the trusted keys.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// Adds `other`'s keys (ids already present are kept as they are), e.g. to accept
    /// tokens from both the current and the previous signing key during rotation.
    pub fn extend(&mut self, other: &TokenVerifier) {
        for key in &other.keys {
            if !self.keys.iter().any(|k| k.kid == key.kid) {
                self.keys.push(key.clone());
            }
        }
    }

    /// Verifies a compact JWS and returns its claims object. Checks structure, `alg`
    /// (ES256 only — `none` and everything else are rejected), `kid` and signature; it
    /// does not look at `exp`, `nbf`, `aud` or `iss`.
    pub fn verify(&self, token: &str) -> Result<Value, CryptoError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(CryptoError::InvalidToken("token too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::InvalidToken(
                "expected three dot-separated parts",
            ));
        };

        let header = decode_json_object(header_b64, "malformed header")?;
        match header.get("alg") {
            Some(Value::String(alg)) if alg == ALG => {}
            _ => return Err(CryptoError::InvalidToken("unsupported alg")),
        }
        // RFC 7515 §4.1.11: extensions listed in "crit" must be understood; we
        // understand none, so any "crit" header means reject.
        if header.contains_key("crit") {
            return Err(CryptoError::InvalidToken("unsupported critical header"));
        }
        let key = match header.get("kid") {
            Some(Value::String(kid)) => self
                .keys
                .iter()
                .find(|k| k.kid == *kid)
                .ok_or(CryptoError::InvalidToken("unknown kid"))?,
            Some(_) => return Err(CryptoError::InvalidToken("malformed kid")),
            None => match self.keys.as_slice() {
                [only] => only,
                _ => return Err(CryptoError::InvalidToken("missing kid")),
            },
        };

        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| CryptoError::InvalidToken("malformed signature"))?;
        if signature.len() != SIG_LEN {
            return Err(CryptoError::InvalidToken("malformed signature"));
        }
        // The signing input is the two encoded parts exactly as received.
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        key.key
            .verify_sig(signing_input, &signature)
            .map_err(|_| CryptoError::InvalidToken("bad signature"))?;

        // Only parse the payload once it is known to be authentic.
        let claims = decode_json_object(payload_b64, "malformed payload")?;
        Ok(Value::Object(claims))
    }
}

fn decode_json_object(part: &str, reason: &'static str) -> Result<Map<String, Value>, CryptoError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| CryptoError::InvalidToken(reason))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(CryptoError::InvalidToken(reason)),
    }
}

fn kid_for_point(point: &[u8]) -> String {
    let mut kid = URL_SAFE_NO_PAD.encode(sha256(point));
    kid.truncate(KID_LEN);
    kid
}

fn jwk_for_point(point: &[u8], kid: &str) -> Value {
    // An uncompressed point is 0x04 || x || y; anything else cannot be described as a
    // P-256 JWK, so fall back to empty coordinates rather than panicking (never happens
    // for points produced or accepted by this module).
    let (x, y) = match point {
        [0x04, rest @ ..] if rest.len() == 2 * COORD_LEN => rest.split_at(COORD_LEN),
        _ => (&[][..], &[][..]),
    };
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
        "use": "sig",
        "alg": ALG,
        "kid": kid,
    })
}

/// Parses one JWK into a trusted key, or `None` if it is not a usable ES256 key.
fn parse_jwk(jwk: &Value) -> Option<VerifierKey> {
    let str_field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if str_field("kty")? != "EC" || str_field("crv")? != "P-256" {
        return None;
    }
    // Optional fields, but if present they must agree with how we will use the key.
    if jwk.get("alg").is_some_and(|a| a.as_str() != Some(ALG)) {
        return None;
    }
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return None;
    }
    let x = URL_SAFE_NO_PAD.decode(str_field("x")?).ok()?;
    let y = URL_SAFE_NO_PAD.decode(str_field("y")?).ok()?;
    if x.len() != COORD_LEN || y.len() != COORD_LEN {
        return None;
    }
    let mut point = Vec::with_capacity(POINT_LEN);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // Rejects points that are not on the curve.
    let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).ok()?;
    let kid = match jwk.get("kid") {
        None => kid_for_point(&point),
        Some(kid) => kid.as_str()?.to_string(),
    };
    Some(VerifierKey { kid, point, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8().unwrap()).unwrap()
    }

    fn claims() -> Value {
        json!({"sub": "client-1", "aud": "https://vault.azure.net", "exp": 2_000_000_000u64})
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn sign_verify_round_trip() {
        let s = signer();
        let token = s.sign(&claims()).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert!(!token.contains('='));
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, json!({"alg":"ES256","typ":"JWT","kid":s.kid()}));
        let sig = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(2).unwrap())
            .unwrap();
        assert_eq!(sig.len(), 64);
        assert_eq!(s.verifier().verify(&token).unwrap(), claims());
    }

    #[test]
    fn kid_is_stable_and_derived() {
        let der = TokenSigner::generate_pkcs8().unwrap();
        let a = TokenSigner::from_pkcs8(&der).unwrap();
        let b = TokenSigner::from_pkcs8(&der).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.kid().len(), 22);
        assert_ne!(a.kid(), signer().kid());
        assert!(!format!("{a:?}").contains("key_pair"));
    }

    #[test]
    fn from_pkcs8_rejects_garbage() {
        assert!(matches!(
            TokenSigner::from_pkcs8(b"not a key"),
            Err(CryptoError::InvalidKey)
        ));
    }

    #[test]
    fn non_object_claims_rejected() {
        assert!(signer().sign(&json!([1, 2])).is_err());
    }

    #[test]
    fn tampered_payload_rejected() {
        let s = signer();
        let token = s.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let forged = format!("{}.{}.{}", parts[0], b64(&evil), parts[2]);
        assert!(matches!(
            s.verifier().verify(&forged),
            Err(CryptoError::InvalidToken("bad signature"))
        ));
    }

    #[test]
    fn tampered_signature_rejected() {
        let s = signer();
        let token = s.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
        assert!(s.verifier().verify(&forged).is_err());
    }

    #[test]
    fn alg_none_and_others_rejected() {
        let s = signer();
        let token = s.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        for alg in ["none", "None", "HS256", "RS256", "ES384"] {
            let header = b64(&json!({"alg": alg, "typ": "JWT", "kid": s.kid()}));
            for sig in ["", parts[2]] {
                let forged = format!("{header}.{}.{sig}", parts[1]);
                assert!(matches!(
                    s.verifier().verify(&forged),
                    Err(CryptoError::InvalidToken(_))
                ));
            }
        }
        let no_alg = format!(
            "{}.{}.{}",
            b64(&json!({"kid": s.kid()})),
            parts[1],
            parts[2]
        );
        assert!(s.verifier().verify(&no_alg).is_err());
    }

    #[test]
    fn unknown_kid_rejected() {
        let a = signer();
        let b = signer();
        let token = a.sign(&claims()).unwrap();
        assert!(matches!(
            b.verifier().verify(&token),
            Err(CryptoError::InvalidToken("unknown kid"))
        ));
    }

    #[test]
    fn missing_kid_uses_single_key() {
        let s = signer();
        let token = s.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // Re-sign with a header lacking kid.
        let header = b64(&json!({"alg":"ES256","typ":"JWT"}));
        let input = format!("{header}.{}", parts[1]);
        let sig = s
            .key_pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        assert_eq!(s.verifier().verify(&token).unwrap(), claims());

        // With two trusted keys, a kid-less token is ambiguous.
        let mut two = s.verifier();
        two.extend(&signer().verifier());
        assert!(matches!(
            two.verify(&token),
            Err(CryptoError::InvalidToken("missing kid"))
        ));
    }

    #[test]
    fn structural_garbage_rejected() {
        let s = signer();
        let v = s.verifier();
        let token = s.sign(&claims()).unwrap();
        let cases = [
            String::new(),
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            format!("{token}."),
            format!("{token}=="),
            format!(".{token}"),
            token.replace('.', ".."),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for case in &cases {
            assert!(v.verify(case).is_err());
        }
        let parts: Vec<&str> = token.split('.').collect();
        let crit = b64(&json!({"alg":"ES256","kid":s.kid(),"crit":["exp"]}));
        assert!(v
            .verify(&format!("{crit}.{}.{}", parts[1], parts[2]))
            .is_err());
    }

    #[test]
    fn verify_via_jwks() {
        let s = signer();
        let token = s.sign(&claims()).unwrap();
        let jwk = s.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], s.kid());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        let v = TokenVerifier::from_jwks(&json!({"keys": [jwk]})).unwrap();
        assert_eq!(v.verify(&token).unwrap(), claims());
        assert_eq!(v.to_jwks(), json!({"keys": [s.public_jwk()]}));

        // kid-less JWK gets the derived kid.
        let mut no_kid = s.public_jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        let v = TokenVerifier::from_jwks(&json!({"keys": [no_kid]})).unwrap();
        assert_eq!(v.kids().collect::<Vec<_>>(), vec![s.kid()]);
        assert!(v.verify(&token).is_ok());
    }

    #[test]
    fn jwks_skips_unusable_keys() {
        let s = signer();
        let mut off_curve = s.public_jwk();
        off_curve["x"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        off_curve["kid"] = json!("bogus");
        let mut rs = s.public_jwk();
        rs["alg"] = json!("RS256");
        let jwks = json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "oct", "k": "AAAA"},
            off_curve,
            rs,
            s.public_jwk(),
        ]});
        let v = TokenVerifier::from_jwks(&jwks).unwrap();
        assert_eq!(v.kids().collect::<Vec<_>>(), vec![s.kid()]);

        assert!(TokenVerifier::from_jwks(&json!({"keys": []})).is_err());
        assert!(TokenVerifier::from_jwks(&json!({})).is_err());
        assert!(TokenVerifier::from_jwks(&json!({"keys": [{"kty": "RSA"}]})).is_err());
    }
}
