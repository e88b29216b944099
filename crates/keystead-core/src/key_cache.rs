//! A bounded in-memory cache of parsed RSA and EC private keys, so a key operation does not
//! unseal and re-parse its private key on every request. Parsing is what made RSA signing
//! slow: aws-lc validates an RSA key on `from_pkcs8`, which costs about as much as a signature.
//!
//! Only the parsed private key is cached. Everything that decides whether an operation may run
//! (the caller's role, the object being active, the version's enabled flag, nbf/exp, key_ops,
//! the algorithm fitting the key) is still read from the store and checked on every request
//! before the cache is consulted, so a disabled, expired, deleted or purged key, or one whose
//! key_ops no longer allow the operation, is refused exactly as without the cache.
//!
//! An entry is found by the AAD its sealed private key is bound to (vault, collection, name,
//! version: `value_aad`) and the form it was parsed into, and it is used only if the SHA-256 of
//! the sealed ciphertext in the freshly read record equals the one it was parsed from. The KEK
//! is fixed for the node's lifetime, so a hit yields exactly what unsealing and parsing that
//! record would; replaced material (a restore, a re-import) is sealed with a fresh DEK and nonce,
//! so its ciphertext differs and it misses. Keying by the AAD and not by the ciphertext alone
//! keeps the AAD's guarantee: a ciphertext copied under another name would not open, so it must
//! not hit either.
//!
//! Bounds, so parsed material of keys no longer in use does not stay in memory: at most
//! [`CAPACITY`] entries (the least recently used goes first), entries unused for [`IDLE`] are
//! dropped (swept at most once a minute, on access), and an object's entries are dropped when
//! it is deleted or purged through this node. Dropping the last `Arc` frees the key in aws-lc,
//! which wipes it (see `keystead_crypto::keys::PrivateKey`).

use keystead_crypto::keys::{KeyForm, PrivateKey};
use keystead_model::Ciphertext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most parsed keys kept. A parsed RSA-4096 key with its Montgomery contexts and blinding
/// values is a few tens of kilobytes in aws-lc, so this bounds the cache to a few megabytes.
pub(crate) const CAPACITY: usize = 256;
/// Entries not used for this long are dropped.
pub(crate) const IDLE: Duration = Duration::from_secs(10 * 60);
/// How often, at most, idle entries are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Which parsed key: the AAD of the sealed private key and the form it is parsed into.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub aad: Vec<u8>,
    pub form: KeyForm,
}

/// The SHA-256 of a sealed private key: an entry is valid only for the ciphertext it was
/// parsed from. (A hash rather than the ciphertext itself keeps entries small.)
pub(crate) type Fingerprint = [u8; 32];

pub(crate) fn fingerprint(sealed: &Ciphertext) -> Fingerprint {
    keystead_crypto::random::sha256(&sealed.0)
}

struct Entry {
    sealed: Fingerprint,
    key: Arc<PrivateKey>,
    used: Instant,
}

struct Entries {
    map: HashMap<CacheKey, Entry>,
    swept: Instant,
}

pub(crate) struct KeyCache {
    entries: Mutex<Entries>,
    capacity: usize,
    idle: Duration,
}

impl KeyCache {
    pub(crate) fn new(capacity: usize, idle: Duration) -> KeyCache {
        KeyCache {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
            capacity,
            idle,
        }
    }

    /// The map. A panic while the lock was held cannot leave it inconsistent (every update is
    /// a single map operation), so a poisoned lock is used as is rather than failing requests.
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The parsed key for `key`, if one was parsed from the ciphertext with this fingerprint.
    pub(crate) fn get(&self, key: &CacheKey, sealed: &Fingerprint) -> Option<Arc<PrivateKey>> {
        let now = Instant::now();
        let mut entries = self.lock();
        self.sweep(&mut entries, now);
        let entry = entries.map.get_mut(key)?;
        if entry.sealed != *sealed {
            // Stale: the version's material changed. The caller parses the new one and
            // `insert` replaces this entry.
            return None;
        }
        entry.used = now;
        Some(entry.key.clone())
    }

    /// Keeps a freshly parsed key, evicting the least recently used entry when full.
    pub(crate) fn insert(&self, key: CacheKey, sealed: Fingerprint, parsed: Arc<PrivateKey>) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        self.sweep(&mut entries, now);
        if entries.map.len() >= self.capacity && !entries.map.contains_key(&key) {
            // O(capacity), only when a miss meets a full cache.
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.map.remove(&oldest);
            }
        }
        entries.map.insert(
            key,
            Entry {
                sealed,
                key: parsed,
                used: now,
            },
        );
    }

    /// Drops every entry whose AAD starts with `prefix` (an object's, or a vault's, keys).
    pub(crate) fn forget(&self, prefix: &[u8]) {
        self.lock().map.retain(|k, _| !k.aad.starts_with(prefix));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn sweep(&self, entries: &mut Entries, now: Instant) {
        if now.duration_since(entries.swept) < SWEEP_EVERY.min(self.idle) {
            return;
        }
        entries.swept = now;
        let idle = self.idle;
        entries.map.retain(|_, e| now.duration_since(e.used) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keystead_crypto::keys::{generate_ec, EcCurve};

    fn parsed() -> Arc<PrivateKey> {
        let key = generate_ec(EcCurve::P256).unwrap();
        Arc::new(PrivateKey::from_pkcs8(KeyForm::Ec(EcCurve::P256), &key.private).unwrap())
    }

    fn key(aad: &str) -> CacheKey {
        CacheKey {
            aad: aad.as_bytes().to_vec(),
            form: KeyForm::Ec(EcCurve::P256),
        }
    }

    #[test]
    fn hits_only_for_the_same_aad_form_and_ciphertext() {
        let cache = KeyCache::new(8, IDLE);
        let sealed = fingerprint(&Ciphertext(b"sealed-1".to_vec()));
        let other = fingerprint(&Ciphertext(b"sealed-2".to_vec()));
        let k = parsed();
        cache.insert(key("v/keys/a/1"), sealed, k.clone());
        let hit = cache.get(&key("v/keys/a/1"), &sealed).unwrap();
        assert!(Arc::ptr_eq(&hit, &k));
        assert!(
            cache.get(&key("v/keys/a/1"), &other).is_none(),
            "new material"
        );
        assert!(
            cache.get(&key("v/keys/a/2"), &sealed).is_none(),
            "other version"
        );
        assert!(
            cache.get(&key("w/keys/a/1"), &sealed).is_none(),
            "same bytes, other AAD"
        );
        let rsa = CacheKey {
            form: KeyForm::RsaSigning,
            ..key("v/keys/a/1")
        };
        assert!(cache.get(&rsa, &sealed).is_none(), "other form");
        // Replacing the stale entry makes the new material the one that hits.
        let k2 = parsed();
        cache.insert(key("v/keys/a/1"), other, k2.clone());
        assert!(Arc::ptr_eq(
            &cache.get(&key("v/keys/a/1"), &other).unwrap(),
            &k2
        ));
        assert!(cache.get(&key("v/keys/a/1"), &sealed).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn evicts_the_least_recently_used_when_full() {
        let cache = KeyCache::new(2, IDLE);
        let fp = [7u8; 32];
        cache.insert(key("a"), fp, parsed());
        cache.insert(key("b"), fp, parsed());
        assert!(cache.get(&key("a"), &fp).is_some()); // b is now the least recently used
        cache.insert(key("c"), fp, parsed());
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("b"), &fp).is_none());
        assert!(cache.get(&key("a"), &fp).is_some());
        assert!(cache.get(&key("c"), &fp).is_some());
        let off = KeyCache::new(0, IDLE);
        off.insert(key("a"), fp, parsed());
        assert!(off.get(&key("a"), &fp).is_none());
    }

    #[test]
    fn forgets_by_prefix_and_drops_idle_entries() {
        let cache = KeyCache::new(8, IDLE);
        let fp = [1u8; 32];
        cache.insert(key("v/keys/a/1"), fp, parsed());
        cache.insert(key("v/keys/a/2"), fp, parsed());
        cache.insert(key("v/keys/ab/1"), fp, parsed());
        cache.forget(b"v/keys/a/");
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&key("v/keys/ab/1"), &fp).is_some());

        let idle = KeyCache::new(8, Duration::ZERO);
        idle.insert(key("x"), fp, parsed());
        assert!(idle.get(&key("x"), &fp).is_none(), "idle at once");
        assert_eq!(idle.len(), 0);
    }
}

/// The cache inside a node: what it must never change (refusals follow the current record) and
/// what it must follow (a new version's own key is used).
#[cfg(test)]
mod node_tests {
    use crate::keys::{KeyOperation, KeyProps, KeyRefusal, KeySpec, OperationInput};
    use crate::test_support::{test_node, TestNode};
    use crate::CoreError;
    use keystead_crypto::keys::{rsa_verify_digest, Hash, RsaScheme};
    use keystead_model::{
        ApplyError, AttributesPatch, KeyOp, KeyType, ObjectKind, ObjectName, Payload, PublicKey,
        VaultName,
    };
    use zeroize::Zeroizing;

    const DIGEST: [u8; 32] = [42; 32];

    struct Fixture {
        t: TestNode,
        vault: VaultName,
        name: ObjectName,
    }

    async fn fixture() -> Fixture {
        Fixture {
            t: test_node().await,
            vault: VaultName::parse("demo").unwrap(),
            name: ObjectName::parse("Signer").unwrap(),
        }
    }

    fn input(alg: &str, value: &[u8]) -> OperationInput {
        OperationInput {
            alg: alg.into(),
            value: Zeroizing::new(value.to_vec()),
            iv: None,
            aad: None,
            tag: None,
            digest: None,
        }
    }

    impl Fixture {
        /// PS256 over `DIGEST` with `version` (the latest when `None`): the version that signed
        /// and the signature.
        async fn sign(&self, version: Option<&str>) -> Result<(String, Vec<u8>), CoreError> {
            let out = self
                .t
                .node
                .key_operation(
                    &self.t.caller,
                    &self.vault,
                    &self.name,
                    version,
                    KeyOperation::Sign,
                    input("PS256", &DIGEST),
                )
                .await?;
            let sig = out.result.value.unwrap().to_vec();
            Ok((out.state.version.version, sig))
        }

        async fn update(&self, patch: AttributesPatch, key_ops: Option<Vec<KeyOp>>) {
            self.t
                .node
                .update_key(
                    &self.t.caller,
                    &self.vault,
                    &self.name,
                    None,
                    patch,
                    key_ops,
                    None,
                )
                .await
                .unwrap();
        }

        /// Whether `sig` over `DIGEST` verifies with the public key of `version`.
        fn verifies(&self, version: &str, sig: &[u8]) -> bool {
            let state = self
                .t
                .node
                .get_key(&self.t.caller, &self.vault, &self.name, Some(version))
                .unwrap();
            let Payload::Key { key } = &state.version.payload else {
                panic!("not a key")
            };
            let PublicKey::Rsa { n, e } = &key.public else {
                panic!("not RSA")
            };
            rsa_verify_digest(n, e, RsaScheme::Pss, Hash::Sha256, &DIGEST, sig).unwrap()
        }
    }

    fn refusal(result: Result<(String, Vec<u8>), CoreError>) -> KeyRefusal {
        match result {
            Err(CoreError::KeyRefused { reason, .. }) => reason,
            Err(other) => panic!("expected a key refusal, got {other}"),
            Ok(_) => panic!("expected a key refusal, the operation ran"),
        }
    }

    #[tokio::test]
    async fn refusals_follow_the_current_record_and_versions_use_their_own_key() {
        let f = fixture().await;
        let spec = KeySpec {
            kty: KeyType::Rsa,
            hsm: false,
            key_size: Some(2048),
            public_exponent: None,
            curve: None,
        };
        f.t.node
            .create_key(&f.t.caller, &f.vault, &f.name, spec, KeyProps::default())
            .await
            .unwrap();
        let (v1, sig) = f.sign(None).await.unwrap();
        assert!(f.verifies(&v1, &sig));
        assert_eq!(f.t.node.key_cache.len(), 1, "parsed once, kept");
        let (_, sig) = f.sign(None).await.unwrap();
        assert!(f.verifies(&v1, &sig), "the cached key signs alike");
        assert_eq!(f.t.node.key_cache.len(), 1);

        // Disabled, then key_ops without sign, then expired: each refused although the
        // parsed key is cached.
        let disable = AttributesPatch {
            enabled: Some(false),
            ..AttributesPatch::default()
        };
        f.update(disable, None).await;
        assert_eq!(refusal(f.sign(None).await), KeyRefusal::Disabled);
        let enable = AttributesPatch {
            enabled: Some(true),
            ..AttributesPatch::default()
        };
        f.update(enable, Some(vec![KeyOp::Verify])).await;
        assert_eq!(
            refusal(f.sign(None).await),
            KeyRefusal::OperationNotPermitted
        );
        let expired = AttributesPatch {
            expires: Some(f.t.node.now() - 10),
            ..AttributesPatch::default()
        };
        let ops = vec![KeyOp::Sign, KeyOp::Verify, KeyOp::Encrypt, KeyOp::Decrypt];
        f.update(expired, Some(ops)).await;
        assert_eq!(refusal(f.sign(None).await), KeyRefusal::Expired);
        let valid = AttributesPatch {
            expires: Some(f.t.node.now() + 3600),
            ..AttributesPatch::default()
        };
        f.update(valid, None).await;
        let (_, sig) = f.sign(Some(&v1)).await.unwrap();
        assert!(f.verifies(&v1, &sig), "allowed again");

        // A new version: the latest signs with its own key, the old one still with its own.
        let v2 =
            f.t.node
                .rotate_key(&f.t.caller, &f.vault, &f.name)
                .await
                .unwrap()
                .version
                .version;
        let (used, sig) = f.sign(None).await.unwrap();
        assert_eq!(used, v2);
        assert!(f.verifies(&v2, &sig) && !f.verifies(&v1, &sig));
        let (_, sig) = f.sign(Some(&v1)).await.unwrap();
        assert!(f.verifies(&v1, &sig) && !f.verifies(&v2, &sig));
        assert_eq!(f.t.node.key_cache.len(), 2);

        // Encryption parses into its own form, next to the signing one.
        let ct =
            f.t.node
                .key_operation(
                    &f.t.caller,
                    &f.vault,
                    &f.name,
                    None,
                    KeyOperation::Encrypt,
                    input("RSA-OAEP-256", b"plain"),
                )
                .await
                .unwrap()
                .result
                .value
                .unwrap();
        let pt =
            f.t.node
                .key_operation(
                    &f.t.caller,
                    &f.vault,
                    &f.name,
                    None,
                    KeyOperation::Decrypt,
                    input("RSA-OAEP-256", &ct),
                )
                .await
                .unwrap()
                .result
                .value
                .unwrap();
        assert_eq!(&pt[..], b"plain");
        assert_eq!(f.t.node.key_cache.len(), 3);

        // Deleted: refused, and the parsed keys are dropped. Recovered: signs again.
        f.t.node
            .delete_object(&f.t.caller, &f.vault, ObjectKind::Key, &f.name)
            .await
            .unwrap();
        assert_eq!(f.t.node.key_cache.len(), 0);
        assert!(matches!(
            f.sign(None).await,
            Err(CoreError::Refused(ApplyError::ObjectNotFound { .. }))
        ));
        f.t.node
            .recover_object(&f.t.caller, &f.vault, ObjectKind::Key, &f.name)
            .await
            .unwrap();
        let (used, sig) = f.sign(None).await.unwrap();
        assert!(used == v2 && f.verifies(&v2, &sig));

        // Purged, then a new key under the same name: its own material is used.
        f.t.node
            .delete_object(&f.t.caller, &f.vault, ObjectKind::Key, &f.name)
            .await
            .unwrap();
        f.t.node
            .purge_object(&f.t.caller, &f.vault, ObjectKind::Key, &f.name)
            .await
            .unwrap();
        assert!(f.sign(None).await.is_err());
        let spec = KeySpec {
            kty: KeyType::Rsa,
            hsm: false,
            key_size: Some(2048),
            public_exponent: None,
            curve: None,
        };
        let v3 =
            f.t.node
                .create_key(&f.t.caller, &f.vault, &f.name, spec, KeyProps::default())
                .await
                .unwrap()
                .version
                .version;
        let (used, sig) = f.sign(None).await.unwrap();
        assert!(used == v3 && f.verifies(&v3, &sig));
    }
}
