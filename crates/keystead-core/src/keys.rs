//! Key operations: create, import, get, update, rotate, the cryptographic operations
//! (encrypt/decrypt, wrap/unwrap, sign/verify), rotation policies and `/rng`.
//!
//! Key material is generated (off the async runtime, behind a semaphore) and sealed before the
//! command that stores it is built. For an operation, the version's record is read and checked
//! first; then an RSA or EC private key comes parsed from `key_cache` (unsealed and parsed once
//! per version, the PKCS#8 bytes wiped as soon as they are parsed), and a symmetric key is
//! unsealed for the operation and wiped when it ends. The operation runs inside a blocking task.
//! The lifecycle shared with secrets (list, delete, recover, purge, backup) is in `objects` and
//! `backup`.

use crate::key_cache::{fingerprint, CacheKey, Fingerprint, KeyCache};
use crate::objects::{check_tags, ObjectState};
use crate::secrets::value_aad;
use crate::{Caller, CoreError, Node};
use keystead_crypto::keys::{
    self as kc, EcCurve, Hash, KeyForm, NewKey, PrivateKey, PublicParts, RsaPadding, RsaScheme,
};
use keystead_crypto::CryptoError;
use keystead_model::access::actions;
use keystead_model::key::parse_duration;
use keystead_model::{
    Action, Attributes, AttributesPatch, Ciphertext, Command, Curve, KeyMaterial, KeyOp, KeyType,
    LifetimeAction, ObjectKind, ObjectName, Payload, PublicKey, ReleasePolicy, RotationAction,
    RotationPolicy, RotationTrigger, VaultName, VaultSettings, VersionRecord,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

const KIND: ObjectKind = ObjectKind::Key;

/// At most this many key generations run at once (RSA-4096 takes seconds of CPU); the rest
/// wait here instead of occupying every blocking thread.
static GENERATION: Semaphore = Semaphore::const_new(2);

/// Smallest `expiryTime` a rotation policy may set (Key Vault's rule).
pub const MIN_POLICY_EXPIRY_SECONDS: i64 = 28 * 86_400;
/// Smallest rotation/notification lead time Key Vault accepts.
pub const MIN_TRIGGER_SECONDS: i64 = 7 * 86_400;

/// What kind of key to generate.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub kty: KeyType,
    pub hsm: bool,
    pub key_size: Option<u32>,
    pub public_exponent: Option<u32>,
    pub curve: Option<Curve>,
}

/// Caller-settable properties of a new key version.
#[derive(Clone, Debug, Default)]
pub struct KeyProps {
    pub key_ops: Option<Vec<KeyOp>>,
    pub enabled: Option<bool>,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
    pub exportable: Option<bool>,
    pub tags: BTreeMap<String, String>,
    pub release_policy: Option<ReleasePolicy>,
}

/// A JWK being imported (big-endian components, private ones wiped on drop).
#[derive(Default)]
pub struct ImportedJwk {
    pub kty: Option<(KeyType, bool)>,
    pub crv: Option<Curve>,
    pub n: Option<Vec<u8>>,
    pub e: Option<Vec<u8>>,
    pub x: Option<Vec<u8>>,
    pub y: Option<Vec<u8>>,
    pub d: Option<Zeroizing<Vec<u8>>>,
    pub p: Option<Zeroizing<Vec<u8>>>,
    pub q: Option<Zeroizing<Vec<u8>>>,
    pub dp: Option<Zeroizing<Vec<u8>>>,
    pub dq: Option<Zeroizing<Vec<u8>>>,
    pub qi: Option<Zeroizing<Vec<u8>>>,
    pub k: Option<Zeroizing<Vec<u8>>>,
    pub key_ops: Option<Vec<KeyOp>>,
}

/// The cryptographic operations of the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOperation {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    Sign,
    Verify,
}

impl KeyOperation {
    fn key_op(self) -> KeyOp {
        match self {
            KeyOperation::Encrypt => KeyOp::Encrypt,
            KeyOperation::Decrypt => KeyOp::Decrypt,
            KeyOperation::WrapKey => KeyOp::WrapKey,
            KeyOperation::UnwrapKey => KeyOp::UnwrapKey,
            KeyOperation::Sign => KeyOp::Sign,
            KeyOperation::Verify => KeyOp::Verify,
        }
    }

    fn action(self) -> Action {
        match self {
            KeyOperation::Encrypt => actions::KEY_ENCRYPT,
            KeyOperation::Decrypt => actions::KEY_DECRYPT,
            KeyOperation::WrapKey => actions::KEY_WRAP,
            KeyOperation::UnwrapKey => actions::KEY_UNWRAP,
            KeyOperation::Sign => actions::KEY_SIGN,
            KeyOperation::Verify => actions::KEY_VERIFY,
        }
    }

    pub fn name(self) -> &'static str {
        self.key_op().as_str()
    }

    /// Operations that only undo or check earlier work stay allowed outside nbf/exp (Key
    /// Vault lets expired keys decrypt, unwrap and verify).
    fn allowed_outside_validity(self) -> bool {
        matches!(
            self,
            KeyOperation::Decrypt | KeyOperation::UnwrapKey | KeyOperation::Verify
        )
    }
}

/// Why a key refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRefusal {
    Disabled,
    Expired,
    NotYetValid,
    /// The key's `key_ops` do not include the operation.
    OperationNotPermitted,
}

/// The request of one cryptographic operation.
pub struct OperationInput {
    pub alg: String,
    /// Plaintext, ciphertext, key to wrap/unwrap, digest to sign, or signature to verify.
    pub value: Zeroizing<Vec<u8>>,
    pub iv: Option<Vec<u8>>,
    pub aad: Option<Vec<u8>>,
    pub tag: Option<Vec<u8>>,
    /// Verify only: the digest the signature covers.
    pub digest: Option<Vec<u8>>,
}

/// The result of one cryptographic operation and the key version that performed it.
pub struct OperationOutput {
    pub state: ObjectState,
    pub result: OperationResult,
}

/// What an operation produced (fields as in Key Vault's `KeyOperationResult`).
#[derive(Default)]
pub struct OperationResult {
    pub value: Option<Zeroizing<Vec<u8>>>,
    pub iv: Option<Vec<u8>>,
    pub tag: Option<Vec<u8>>,
    pub aad: Option<Vec<u8>>,
    /// Verify only.
    pub verified: Option<bool>,
}

/// Key Vault's algorithms, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Rsa(RsaPadding),
    /// AES-GCM with a key of this many bytes.
    Gcm(usize),
    /// AES-CBC (bytes, PKCS#7 padding).
    Cbc(usize, bool),
    /// AES key wrap (bytes, or `None` for the CKM_ variants that take any AES key; padding).
    Kw(Option<usize>, bool),
    RsaSig(RsaScheme, Hash),
    Ecdsa(Curve, Hash),
    Hmac(Hash),
}

fn parse_alg(raw: &str) -> Result<Alg, CoreError> {
    use Hash::*;
    Ok(match raw {
        "RSA-OAEP" => Alg::Rsa(RsaPadding::OaepSha1),
        "RSA-OAEP-256" => Alg::Rsa(RsaPadding::OaepSha256),
        "RSA1_5" => Alg::Rsa(RsaPadding::Pkcs1),
        "A128GCM" => Alg::Gcm(16),
        "A192GCM" => Alg::Gcm(24),
        "A256GCM" => Alg::Gcm(32),
        "A128CBC" => Alg::Cbc(16, false),
        "A192CBC" => Alg::Cbc(24, false),
        "A256CBC" => Alg::Cbc(32, false),
        "A128CBCPAD" => Alg::Cbc(16, true),
        "A192CBCPAD" => Alg::Cbc(24, true),
        "A256CBCPAD" => Alg::Cbc(32, true),
        "A128KW" => Alg::Kw(Some(16), false),
        "A192KW" => Alg::Kw(Some(24), false),
        "A256KW" => Alg::Kw(Some(32), false),
        "CKM_AES_KEY_WRAP" => Alg::Kw(None, false),
        "CKM_AES_KEY_WRAP_PAD" => Alg::Kw(None, true),
        "RS256" => Alg::RsaSig(RsaScheme::Pkcs1, Sha256),
        "RS384" => Alg::RsaSig(RsaScheme::Pkcs1, Sha384),
        "RS512" => Alg::RsaSig(RsaScheme::Pkcs1, Sha512),
        "PS256" => Alg::RsaSig(RsaScheme::Pss, Sha256),
        "PS384" => Alg::RsaSig(RsaScheme::Pss, Sha384),
        "PS512" => Alg::RsaSig(RsaScheme::Pss, Sha512),
        "ES256" => Alg::Ecdsa(Curve::P256, Sha256),
        "ES384" => Alg::Ecdsa(Curve::P384, Sha384),
        "ES512" => Alg::Ecdsa(Curve::P521, Sha512),
        "ES256K" => Alg::Ecdsa(Curve::P256K, Sha256),
        "HS256" => Alg::Hmac(Sha256),
        "HS384" => Alg::Hmac(Sha384),
        "HS512" => Alg::Hmac(Sha512),
        "RSNULL" => {
            return Err(CoreError::BadParameter(
                "The algorithm RSNULL is not supported: Keystead signs only with a named hash (RS*/PS*)."
                    .into(),
            ))
        }
        other => {
            return Err(CoreError::BadParameter(format!(
                "Invalid algorithm: '{}'.",
                other
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(32)
                    .collect::<String>()
            )))
        }
    })
}

/// The form of parsed key an operation with `alg` uses; `None` for symmetric keys, which are
/// used as raw bytes. Those are not cached: unsealing 32 bytes costs a few microseconds, and
/// keeping raw key bytes in the heap between requests would buy nothing.
fn key_form(alg: Alg) -> Option<KeyForm> {
    match alg {
        Alg::Rsa(_) => Some(KeyForm::RsaEncryption),
        Alg::RsaSig(..) => Some(KeyForm::RsaSigning),
        Alg::Ecdsa(curve, _) => Some(KeyForm::Ec(ec_curve(curve))),
        Alg::Gcm(_) | Alg::Cbc(..) | Alg::Kw(..) | Alg::Hmac(_) => None,
    }
}

/// The private half of a key version, as an operation gets it.
enum Private {
    /// Symmetric key bytes, wiped when the operation is done.
    Raw(Zeroizing<Vec<u8>>),
    /// A parsed RSA or EC key.
    Parsed(Arc<PrivateKey>),
    /// Unsealed PKCS#8 that missed the cache: parsed on the blocking thread (see `parse`).
    Unparsed {
        pkcs8: Zeroizing<Vec<u8>>,
        key: CacheKey,
        sealed: Fingerprint,
    },
}

impl Private {
    /// Parses missed PKCS#8 and keeps the result in `cache`; the PKCS#8 bytes are wiped here,
    /// as soon as they are parsed (or refused).
    fn parse(self, cache: &KeyCache) -> Result<Private, CoreError> {
        let Private::Unparsed { pkcs8, key, sealed } = self else {
            return Ok(self);
        };
        let parsed = Arc::new(PrivateKey::from_pkcs8(key.form, &pkcs8)?);
        drop(pkcs8);
        cache.insert(key, sealed, parsed.clone());
        Ok(Private::Parsed(parsed))
    }

    /// Runs on the async worker rather than a blocking thread: an already parsed P-256 key (an
    /// ECDSA signature costs about 25 us) and an already parsed RSA key of at most 2048 bits
    /// (a private operation costs about 0.7 ms — on 2 cores the hand-off to and from a pool of
    /// dozens of blocking threads cost more CPU than it saved, see docs/benchmarks.md). Larger
    /// RSA keys (3072: ~2 ms, 4096: ~5 ms), the slower curves, parsing and symmetric operations
    /// over request-sized inputs go to a blocking thread.
    fn is_quick(&self, public: &PublicKey) -> bool {
        let Private::Parsed(key) = self else {
            return false;
        };
        match key.form() {
            KeyForm::Ec(EcCurve::P256 | EcCurve::P256K) => true,
            KeyForm::RsaSigning | KeyForm::RsaEncryption => public.bits() <= 2048,
            _ => false,
        }
    }

    fn raw(&self) -> Result<&[u8], CoreError> {
        match self {
            Private::Raw(bytes) => Ok(bytes),
            _ => Err(CoreError::Internal("symmetric key not opened".into())),
        }
    }

    fn parsed(&self) -> Result<&PrivateKey, CoreError> {
        match self {
            Private::Parsed(key) => Ok(key),
            _ => Err(CoreError::Internal("private key not parsed".into())),
        }
    }
}

fn ec_curve(curve: Curve) -> EcCurve {
    match curve {
        Curve::P256 => EcCurve::P256,
        Curve::P384 => EcCurve::P384,
        Curve::P521 => EcCurve::P521,
        Curve::P256K => EcCurve::P256K,
    }
}

/// Crypto failures caused by the caller's input become 400s; one uniform message for every
/// failed decryption or unwrap, so nothing distinguishes padding from tag failures.
fn input_error(e: CryptoError) -> CoreError {
    match e {
        CryptoError::Decrypt => CoreError::BadParameter(
            "The ciphertext could not be decrypted with this key and algorithm.".into(),
        ),
        CryptoError::InvalidInput(why) => CoreError::BadParameter(capitalize(why)),
        other => CoreError::Internal(other.to_string()),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

fn bad(message: &str) -> CoreError {
    CoreError::BadParameter(message.to_string())
}

/// Generates key material for `spec` on a blocking thread, at most two at a time.
async fn generate(spec: &KeySpec) -> Result<(NewKey, PublicKey), CoreError> {
    enum Plan {
        Rsa(u32, u32),
        Ec(Curve),
        Oct(u32),
    }
    let plan = match spec.kty {
        KeyType::Rsa => {
            if spec.curve.is_some() {
                return Err(bad("crv is only valid for EC keys."));
            }
            let exponent = spec.public_exponent.unwrap_or(65537);
            if exponent < 3 || exponent & 1 == 0 || exponent > i32::MAX as u32 {
                return Err(bad(
                    "public_exponent must be an odd number of at least 3 (65537 is the default).",
                ));
            }
            let bits = spec.key_size.unwrap_or(2048);
            if !matches!(bits, 2048 | 3072 | 4096) {
                return Err(bad("RSA key_size must be 2048, 3072 or 4096."));
            }
            Plan::Rsa(bits, exponent)
        }
        KeyType::Ec => {
            let curve = match (spec.curve, spec.key_size) {
                (Some(curve), None) => curve,
                (Some(curve), Some(size)) if size == curve.bits() => curve,
                (Some(_), Some(_)) => return Err(bad("key_size does not match crv.")),
                (None, None | Some(256)) => Curve::P256,
                (None, Some(384)) => Curve::P384,
                (None, Some(521)) => Curve::P521,
                (None, Some(_)) => return Err(bad("EC key_size must be 256, 384 or 521.")),
            };
            Plan::Ec(curve)
        }
        KeyType::Oct => {
            if spec.curve.is_some() {
                return Err(bad("crv is only valid for EC keys."));
            }
            let bits = spec.key_size.unwrap_or(256);
            if !matches!(bits, 128 | 192 | 256) {
                return Err(bad("oct key_size must be 128, 192 or 256."));
            }
            Plan::Oct(bits)
        }
    };
    let _permit = GENERATION
        .acquire()
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || -> Result<(NewKey, PublicKey), CryptoError> {
        Ok(match plan {
            Plan::Rsa(bits, exponent) => {
                let key = kc::generate_rsa_with_exponent(bits, exponent)?;
                let public = to_model_public(&key.public, None, 0)?;
                (key, public)
            }
            Plan::Ec(curve) => {
                let key = kc::generate_ec(ec_curve(curve))?;
                let public = to_model_public(&key.public, Some(curve), 0)?;
                (key, public)
            }
            Plan::Oct(bits) => {
                let private = kc::generate_oct(bits as usize / 8)?;
                (
                    NewKey {
                        private,
                        public: PublicParts::Oct,
                    },
                    PublicKey::Oct { bits },
                )
            }
        })
    })
    .await
    .map_err(|e| CoreError::Internal(format!("key generation task: {e}")))?
    .map_err(CoreError::from)
}

fn to_model_public(
    public: &PublicParts,
    curve: Option<Curve>,
    oct_bits: u32,
) -> Result<PublicKey, CryptoError> {
    Ok(match (public, curve) {
        (PublicParts::Rsa { n, e }, _) => PublicKey::Rsa {
            n: n.clone(),
            e: e.clone(),
        },
        (PublicParts::Ec { x, y }, Some(crv)) => PublicKey::Ec {
            crv,
            x: x.clone(),
            y: y.clone(),
        },
        (PublicParts::Oct, _) => PublicKey::Oct { bits: oct_bits },
        (PublicParts::Ec { .. }, None) => {
            return Err(CryptoError::Internal("EC key without curve"))
        }
    })
}

fn check_key_ops(kty: KeyType, ops: &[KeyOp]) -> Result<(), CoreError> {
    let invalid = ops.iter().find(|op| match kty {
        KeyType::Ec => matches!(
            op,
            KeyOp::Encrypt | KeyOp::Decrypt | KeyOp::WrapKey | KeyOp::UnwrapKey
        ),
        KeyType::Rsa | KeyType::Oct => false,
    });
    match invalid {
        Some(op) => Err(CoreError::BadParameter(format!(
            "The key operation '{}' is not valid for {} keys.",
            op.as_str(),
            kty.jwk_name()
        ))),
        None => Ok(()),
    }
}

impl Node {
    /// Creates a new key (or a new version of an existing one).
    pub async fn create_key(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        spec: KeySpec,
        props: KeyProps,
    ) -> Result<ObjectState, CoreError> {
        let settings = self.authorize(caller, vault, actions::KEY_CREATE, Some((KIND, name)))?;
        check_props(spec.kty, &props)?;
        let (key, public) = generate(&spec).await?;
        self.store_key(settings, name, key, public, spec.hsm, props, None)
            .await
    }

    /// Imports a JWK as a new key version.
    pub async fn import_key(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        jwk: ImportedJwk,
        hsm: bool,
        mut props: KeyProps,
    ) -> Result<ObjectState, CoreError> {
        let settings = self.authorize(caller, vault, actions::KEY_IMPORT, Some((KIND, name)))?;
        let (kty, kty_hsm) = jwk
            .kty
            .ok_or_else(|| bad("The JSON Web Key must have a valid kty."))?;
        if props.key_ops.is_none() {
            props.key_ops = jwk.key_ops.clone();
        }
        check_props(kty, &props)?;
        let (key, public) = tokio::task::spawn_blocking(move || import_material(kty, &jwk))
            .await
            .map_err(|e| CoreError::Internal(format!("key import task: {e}")))??;
        self.store_key(settings, name, key, public, hsm || kty_hsm, props, None)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_key(
        &self,
        settings: VaultSettings,
        name: &ObjectName,
        key: NewKey,
        public: PublicKey,
        hsm: bool,
        props: KeyProps,
        replaces: Option<String>,
    ) -> Result<ObjectState, CoreError> {
        let vault = settings.name.clone();
        let version = keystead_crypto::random::new_version_id()?;
        let sealed = self.seal(&value_aad(&vault, KIND, name, &version), &key.private)?;
        drop(key);
        let now = self.now();
        let kty = public.key_type();
        let record = VersionRecord {
            version,
            attributes: Attributes {
                enabled: props.enabled.unwrap_or(true),
                not_before: props.not_before,
                expires: props.expires,
                created: now,
                updated: now,
            },
            tags: props.tags,
            content_type: None,
            payload: Payload::Key {
                key: Box::new(KeyMaterial {
                    public,
                    private: sealed,
                    hsm_requested: hsm,
                    key_ops: props.key_ops.unwrap_or_else(|| kty.default_ops()),
                    exportable: props.exportable.unwrap_or(false),
                    release_policy: props.release_policy,
                }),
            },
        };
        let command = match replaces {
            Some(replaces) => Command::RotateKey {
                vault,
                name: name.clone(),
                replaces,
                version: record,
            },
            None => Command::PutVersion {
                vault,
                kind: KIND,
                name: name.clone(),
                version: record,
            },
        };
        self.propose_object(settings, command).await
    }

    /// A key version (the latest when `version` is `None`); public material only.
    pub fn get_key(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        version: Option<&str>,
    ) -> Result<ObjectState, CoreError> {
        let settings = self.authorize(caller, vault, actions::KEY_READ, Some((KIND, name)))?;
        self.load_version(settings, KIND, name, version)
    }

    /// Updates attributes, tags, key_ops and release policy of one key version.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_key(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        version: Option<&str>,
        patch: AttributesPatch,
        key_ops: Option<Vec<KeyOp>>,
        release_policy: Option<ReleasePolicy>,
    ) -> Result<ObjectState, CoreError> {
        let settings = self.authorize(caller, vault, actions::KEY_UPDATE, Some((KIND, name)))?;
        crate::objects::check_patch(&patch)?;
        if let Some(ops) = &key_ops {
            let current = self.load_version(settings.clone(), KIND, name, version)?;
            if let Payload::Key { key } = &current.version.payload {
                check_key_ops(key.public.key_type(), ops)?;
            }
        }
        let command = Command::UpdateKey {
            vault: vault.clone(),
            name: name.clone(),
            version: version
                .filter(|v| !v.is_empty())
                .map(str::to_ascii_lowercase),
            patch,
            key_ops,
            release_policy,
            at: self.now(),
        };
        self.propose_object(settings, command).await
    }

    /// Creates a new version with the same parameters as the latest one.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
    ) -> Result<ObjectState, CoreError> {
        let settings = self.authorize(caller, vault, actions::KEY_ROTATE, Some((KIND, name)))?;
        let current = self.load_version(settings, KIND, name, None)?;
        self.rotate_from(current, false).await
    }

    /// The rotation itself, shared by the API and the rotation timer. With `guarded`, the new
    /// version is added only if `current` is still the latest one (`Command::RotateKey`), so
    /// concurrent timers cannot rotate a key twice.
    pub(crate) async fn rotate_from(
        &self,
        current: ObjectState,
        guarded: bool,
    ) -> Result<ObjectState, CoreError> {
        let Payload::Key { key } = &current.version.payload else {
            return Err(CoreError::Internal("the key version holds no key".into()));
        };
        let spec = match &key.public {
            PublicKey::Rsa { e, .. } => KeySpec {
                kty: KeyType::Rsa,
                hsm: key.hsm_requested,
                key_size: Some(rsa_generation_size(key.public.bits())),
                // Same exponent as the current version (odd imported exponents above 32 bits
                // fall back to the default).
                public_exponent: exponent_u32(e),
                curve: None,
            },
            PublicKey::Ec { crv, .. } => KeySpec {
                kty: KeyType::Ec,
                hsm: key.hsm_requested,
                key_size: None,
                public_exponent: None,
                curve: Some(*crv),
            },
            PublicKey::Oct { bits } => KeySpec {
                kty: KeyType::Oct,
                hsm: key.hsm_requested,
                key_size: Some(*bits),
                public_exponent: None,
                curve: None,
            },
        };
        let now = self.now();
        let policy = self
            .read()?
            .rotation_policy(&current.vault.name, &current.object.name)?;
        let expires = policy
            .and_then(|p| p.expiry_time)
            .and_then(|d| parse_duration(&d))
            .map(|d| now.saturating_add(d));
        let props = KeyProps {
            key_ops: Some(key.key_ops.clone()),
            enabled: Some(true),
            not_before: None,
            expires,
            exportable: Some(key.exportable),
            tags: current.version.tags.clone(),
            release_policy: key.release_policy.clone(),
        };
        let (material, public) = generate(&spec).await?;
        let name = current.object.name.clone();
        let replaces = guarded.then(|| current.version.version.clone());
        self.store_key(
            current.vault,
            &name,
            material,
            public,
            spec.hsm,
            props,
            replaces,
        )
        .await
    }

    /// One cryptographic operation with a key version (the latest when `version` is `None`).
    pub async fn key_operation(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        version: Option<&str>,
        operation: KeyOperation,
        input: OperationInput,
    ) -> Result<OperationOutput, CoreError> {
        let settings = self.authorize(caller, vault, operation.action(), Some((KIND, name)))?;
        let alg = parse_alg(&input.alg)?;
        let state = self.load_version(settings, KIND, name, version)?;
        let Payload::Key { key } = &state.version.payload else {
            return Err(CoreError::Internal("the key version holds no key".into()));
        };
        let refuse = |reason| CoreError::KeyRefused {
            operation: operation.name(),
            reason,
        };
        let attributes = &state.version.attributes;
        if !attributes.enabled {
            return Err(refuse(KeyRefusal::Disabled));
        }
        if !operation.allowed_outside_validity() {
            let now = self.now();
            if attributes.expires.is_some_and(|exp| exp <= now) {
                return Err(refuse(KeyRefusal::Expired));
            }
            if attributes.not_before.is_some_and(|nbf| nbf > now) {
                return Err(refuse(KeyRefusal::NotYetValid));
            }
        }
        if !key.key_ops.contains(&operation.key_op()) {
            return Err(refuse(KeyRefusal::OperationNotPermitted));
        }
        check_alg(operation, alg, &key.public)?;
        // Every check above ran against the record just read; only now is the private half
        // looked at, so the cache cannot let a refused operation through.
        let public = key.public.clone();
        // Verification needs only the public half for asymmetric keys.
        let private = match (operation, &public) {
            (KeyOperation::Verify, PublicKey::Rsa { .. } | PublicKey::Ec { .. }) => None,
            _ => Some(self.private_key(
                vault,
                name,
                &state.version.version,
                &key.private,
                key_form(alg),
            )?),
        };
        if private.as_ref().is_some_and(|p| p.is_quick(&public)) {
            let result = run_operation(operation, alg, &public, private.as_ref(), input)?;
            return Ok(OperationOutput { state, result });
        }
        let cache = self.key_cache.clone();
        let result = tokio::task::spawn_blocking(move || {
            let private = private.map(|p| p.parse(&cache)).transpose()?;
            run_operation(operation, alg, &public, private.as_ref(), input)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("key operation task: {e}")))??;
        Ok(OperationOutput { state, result })
    }

    /// The private half of a key version: from the cache when `form` is set and it was parsed
    /// from this very ciphertext before, else unsealed (and, with a `form`, left to parse).
    fn private_key(
        &self,
        vault: &VaultName,
        name: &ObjectName,
        version: &str,
        sealed: &Ciphertext,
        form: Option<KeyForm>,
    ) -> Result<Private, CoreError> {
        let aad = value_aad(vault, KIND, name, version);
        let Some(form) = form else {
            return Ok(Private::Raw(self.open_sealed(&aad, sealed)?));
        };
        let key = CacheKey { aad, form };
        let sealed_print = fingerprint(sealed);
        if let Some(parsed) = self.key_cache.get(&key, &sealed_print) {
            return Ok(Private::Parsed(parsed));
        }
        Ok(Private::Unparsed {
            pkcs8: self.open_sealed(&key.aad, sealed)?,
            key,
            sealed: sealed_print,
        })
    }

    /// Drops the parsed keys of every version of `name` (it was deleted or purged).
    pub(crate) fn forget_parsed_keys(&self, vault: &VaultName, name: &ObjectName) {
        self.key_cache.forget(&value_aad(vault, KIND, name, ""));
    }

    pub(crate) fn open_key(
        &self,
        vault: &VaultName,
        name: &ObjectName,
        version: &str,
        sealed: &Ciphertext,
    ) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        self.open_sealed(&value_aad(vault, KIND, name, version), sealed)
    }

    /// The key's rotation policy, `None` when none was set.
    pub fn get_rotation_policy(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
    ) -> Result<(ObjectState, Option<RotationPolicy>), CoreError> {
        let settings = self.authorize(
            caller,
            vault,
            actions::KEY_ROTATION_POLICY_READ,
            Some((KIND, name)),
        )?;
        let state = self.load_version(settings, KIND, name, None)?;
        let policy = self.read()?.rotation_policy(vault, name)?;
        Ok((state, policy))
    }

    /// Validates and stores a rotation policy.
    pub async fn set_rotation_policy(
        &self,
        caller: &Caller,
        vault: &VaultName,
        name: &ObjectName,
        lifetime_actions: Vec<LifetimeAction>,
        expiry_time: Option<String>,
    ) -> Result<(ObjectState, RotationPolicy), CoreError> {
        let settings = self.authorize(
            caller,
            vault,
            actions::KEY_ROTATION_POLICY_WRITE,
            Some((KIND, name)),
        )?;
        let expiry = match &expiry_time {
            Some(raw) => {
                let seconds = parse_duration(raw)
                    .ok_or_else(|| bad("expiryTime must be an ISO-8601 duration such as P90D."))?;
                if seconds < MIN_POLICY_EXPIRY_SECONDS {
                    return Err(bad("expiryTime must be at least 28 days (P28D)."));
                }
                Some(seconds)
            }
            None => None,
        };
        for action in &lifetime_actions {
            let (raw, before_expiry) = match &action.trigger {
                RotationTrigger::AfterCreate(d) => (d, false),
                RotationTrigger::BeforeExpiry(d) => (d, true),
            };
            let seconds = parse_duration(raw).ok_or_else(|| {
                bad("Lifetime action triggers must be ISO-8601 durations such as P30D.")
            })?;
            if action.action == RotationAction::Notify && !before_expiry {
                return Err(bad(
                    "A Notify action can only be triggered by timeBeforeExpiry.",
                ));
            }
            if seconds < MIN_TRIGGER_SECONDS {
                return Err(bad(
                    "Lifetime action triggers must be at least 7 days (P7D).",
                ));
            }
            if let Some(expiry) = expiry {
                if seconds >= expiry {
                    return Err(bad(
                        "Lifetime action triggers must be shorter than the policy's expiryTime.",
                    ));
                }
            }
        }
        if lifetime_actions
            .iter()
            .filter(|a| a.action == RotationAction::Rotate)
            .count()
            > 1
        {
            return Err(bad("A rotation policy can have at most one Rotate action."));
        }
        let now = self.now();
        let policy = RotationPolicy {
            lifetime_actions,
            expiry_time,
            created: now,
            updated: now,
        };
        let command = Command::SetRotationPolicy {
            vault: vault.clone(),
            name: name.clone(),
            policy: policy.clone(),
        };
        self.propose(command).await?;
        let state = self.load_version(settings, KIND, name, None)?;
        let policy = self.read()?.rotation_policy(vault, name)?.unwrap_or(policy);
        Ok((state, policy))
    }

    /// `count` random bytes (1..=128).
    pub fn random_bytes(
        &self,
        caller: &Caller,
        vault: &VaultName,
        count: i64,
    ) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        self.authorize(caller, vault, actions::RNG, None)?;
        if !(1..=128).contains(&count) {
            return Err(bad("count must be between 1 and 128."));
        }
        Ok(kc::random(count as usize)?)
    }
}

fn exponent_u32(e: &[u8]) -> Option<u32> {
    let start = e.iter().position(|b| *b != 0)?;
    let e = &e[start..];
    (e.len() <= 4).then(|| e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// RSA key sizes generation supports, rounding an imported odd size up.
fn rsa_generation_size(bits: u32) -> u32 {
    match bits {
        0..=2048 => 2048,
        2049..=3072 => 3072,
        _ => 4096,
    }
}

fn check_props(kty: KeyType, props: &KeyProps) -> Result<(), CoreError> {
    check_tags(&props.tags)?;
    if let Some(ops) = &props.key_ops {
        check_key_ops(kty, ops)?;
    }
    if props.exportable == Some(true) && props.release_policy.is_none() {
        return Err(bad("Exportable keys must have a release policy."));
    }
    Ok(())
}

fn required<'a, T: AsRef<[u8]>>(value: &'a Option<T>, what: &str) -> Result<&'a [u8], CoreError> {
    value
        .as_ref()
        .map(AsRef::as_ref)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CoreError::BadParameter(format!("The JSON Web Key is missing '{what}'.")))
}

fn import_material(kty: KeyType, jwk: &ImportedJwk) -> Result<(NewKey, PublicKey), CoreError> {
    let invalid = |e: CryptoError| match e {
        CryptoError::InvalidKey => {
            bad("The JSON Web Key is invalid: its components are malformed or inconsistent.")
        }
        other => input_error(other),
    };
    match kty {
        KeyType::Rsa => {
            let d = required(&jwk.d, "d")?;
            let n = required(&jwk.n, "n")?;
            let e = required(&jwk.e, "e")?;
            let (p, q, dp, dq, qi) = (&jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi);
            let key = if p.is_none() && q.is_none() && dp.is_none() && dq.is_none() && qi.is_none()
            {
                // Only n, e, d: the primes and CRT parameters are recovered from them.
                kc::import_rsa_without_crt(n, e, d).map_err(invalid)?
            } else {
                kc::import_rsa(&kc::RsaComponents {
                    n,
                    e,
                    d,
                    p: required(p, "p")?,
                    q: required(q, "q")?,
                    dp: required(dp, "dp")?,
                    dq: required(dq, "dq")?,
                    qi: required(qi, "qi")?,
                })
                .map_err(invalid)?
            };
            let public = to_model_public(&key.public, None, 0)?;
            Ok((key, public))
        }
        KeyType::Ec => {
            let crv = jwk
                .crv
                .ok_or_else(|| bad("The JSON Web Key must have a valid crv."))?;
            let key = kc::import_ec(
                ec_curve(crv),
                required(&jwk.d, "d")?,
                required(&jwk.x, "x")?,
                required(&jwk.y, "y")?,
            )
            .map_err(invalid)?;
            let public = to_model_public(&key.public, Some(crv), 0)?;
            Ok((key, public))
        }
        KeyType::Oct => {
            let k = required(&jwk.k, "k")?;
            if !matches!(k.len(), 16 | 24 | 32) {
                return Err(bad("oct keys must be 128, 192 or 256 bits."));
            }
            let bits = k.len() as u32 * 8;
            Ok((
                NewKey {
                    private: Zeroizing::new(k.to_vec()),
                    public: PublicParts::Oct,
                },
                PublicKey::Oct { bits },
            ))
        }
    }
}

/// Is `alg` usable for `operation` with this key? (wrong type, wrong curve, wrong size → 400)
fn check_alg(operation: KeyOperation, alg: Alg, public: &PublicKey) -> Result<(), CoreError> {
    use KeyOperation::*;
    let ok = match (operation, alg, public) {
        (Encrypt | Decrypt | WrapKey | UnwrapKey, Alg::Rsa(_), PublicKey::Rsa { .. }) => true,
        (Encrypt | Decrypt, Alg::Gcm(len) | Alg::Cbc(len, _), PublicKey::Oct { bits }) => {
            *bits as usize == len * 8
        }
        (WrapKey | UnwrapKey, Alg::Kw(len, _), PublicKey::Oct { bits }) => {
            len.is_none_or(|len| *bits as usize == len * 8)
        }
        (Sign | Verify, Alg::RsaSig(..), PublicKey::Rsa { .. }) => true,
        (Sign | Verify, Alg::Ecdsa(curve, _), PublicKey::Ec { crv, .. }) => {
            if curve != *crv {
                return Err(CoreError::BadParameter(format!(
                    "The algorithm does not match the key's curve {}.",
                    crv.jwk_name()
                )));
            }
            true
        }
        (Sign | Verify, Alg::Hmac(_), PublicKey::Oct { .. }) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(CoreError::BadParameter(format!(
            "The algorithm is not valid for the {} operation with a {} key of this size.",
            operation.name(),
            public.key_type().jwk_name()
        )))
    }
}

fn run_operation(
    operation: KeyOperation,
    alg: Alg,
    public: &PublicKey,
    private: Option<&Private>,
    input: OperationInput,
) -> Result<OperationResult, CoreError> {
    use KeyOperation::*;
    let opened = || private.ok_or_else(|| CoreError::Internal("private key not opened".into()));
    // Symmetric key bytes (AES, HMAC) and parsed keys (RSA, EC).
    let private = || opened()?.raw();
    let parsed = || opened()?.parsed();
    let mut out = OperationResult::default();
    let value = &input.value[..];
    match (operation, alg) {
        (Encrypt | WrapKey, Alg::Rsa(padding)) => {
            let ct = parsed()?.rsa_encrypt(padding, value).map_err(input_error)?;
            out.value = Some(Zeroizing::new(ct));
        }
        (Decrypt | UnwrapKey, Alg::Rsa(padding)) => {
            out.value = Some(parsed()?.rsa_decrypt(padding, value).map_err(input_error)?);
        }
        (Encrypt, Alg::Gcm(_)) => {
            let iv = match input.iv {
                Some(iv) => iv,
                None => kc::random_iv(kc::GCM_IV_LEN)?,
            };
            let aad = input.aad.unwrap_or_default();
            let sealed = kc::aes_gcm_encrypt(private()?, &iv, &aad, value).map_err(input_error)?;
            out.value = Some(Zeroizing::new(sealed.ciphertext));
            out.tag = Some(sealed.tag);
            out.iv = Some(iv);
            out.aad = (!aad.is_empty()).then_some(aad);
        }
        (Decrypt, Alg::Gcm(_)) => {
            let iv = input
                .iv
                .ok_or_else(|| bad("AES-GCM decryption needs the iv."))?;
            let tag = input
                .tag
                .ok_or_else(|| bad("AES-GCM decryption needs the authentication tag."))?;
            let aad = input.aad.unwrap_or_default();
            out.value =
                Some(kc::aes_gcm_decrypt(private()?, &iv, &aad, value, &tag).map_err(input_error)?);
        }
        (Encrypt, Alg::Cbc(_, pad)) => {
            let iv = match input.iv {
                Some(iv) => iv,
                None => kc::random_iv(kc::CBC_IV_LEN)?,
            };
            let ct = kc::aes_cbc_encrypt(private()?, &iv, value, pad).map_err(input_error)?;
            out.value = Some(Zeroizing::new(ct));
            out.iv = Some(iv);
        }
        (Decrypt, Alg::Cbc(_, pad)) => {
            let iv = input
                .iv
                .ok_or_else(|| bad("AES-CBC decryption needs the iv."))?;
            out.value =
                Some(kc::aes_cbc_decrypt(private()?, &iv, value, pad).map_err(input_error)?);
        }
        (WrapKey, Alg::Kw(_, pad)) => {
            let wrapped = kc::aes_wrap(private()?, value, pad).map_err(input_error)?;
            out.value = Some(Zeroizing::new(wrapped));
        }
        (UnwrapKey, Alg::Kw(_, pad)) => {
            out.value = Some(kc::aes_unwrap(private()?, value, pad).map_err(input_error)?);
        }
        (Sign, Alg::RsaSig(scheme, hash)) => {
            check_digest(hash, value)?;
            let sig = parsed()?
                .rsa_sign_digest(scheme, hash, value)
                .map_err(input_error)?;
            out.value = Some(Zeroizing::new(sig));
        }
        (Sign, Alg::Ecdsa(_, hash)) => {
            check_digest(hash, value)?;
            let sig = parsed()?.ec_sign_digest(hash, value).map_err(input_error)?;
            out.value = Some(Zeroizing::new(sig));
        }
        (Sign, Alg::Hmac(hash)) => {
            out.value = Some(Zeroizing::new(kc::hmac_sign(private()?, hash, value)));
        }
        (Verify, alg) => {
            let digest = input
                .digest
                .ok_or_else(|| bad("Verify needs the digest the signature covers."))?;
            let verified = match (alg, public) {
                (Alg::RsaSig(scheme, hash), PublicKey::Rsa { n, e }) => {
                    check_digest(hash, &digest)?;
                    kc::rsa_verify_digest(n, e, scheme, hash, &digest, value)
                        .map_err(input_error)?
                }
                (Alg::Ecdsa(curve, hash), PublicKey::Ec { x, y, .. }) => {
                    check_digest(hash, &digest)?;
                    kc::ec_verify_digest(ec_curve(curve), x, y, hash, &digest, value)
                        .map_err(input_error)?
                }
                (Alg::Hmac(hash), PublicKey::Oct { .. }) => {
                    kc::hmac_verify(private()?, hash, &digest, value)
                }
                _ => return Err(bad("The algorithm is not valid for this key.")),
            };
            out.verified = Some(verified);
        }
        _ => return Err(bad("The algorithm is not valid for this operation.")),
    }
    Ok(out)
}

fn check_digest(hash: Hash, digest: &[u8]) -> Result<(), CoreError> {
    if digest.len() == hash.digest_len() {
        Ok(())
    } else {
        Err(CoreError::BadParameter(format!(
            "Invalid digest length: the algorithm needs a {}-byte digest, got {} bytes.",
            hash.digest_len(),
            digest.len()
        )))
    }
}
