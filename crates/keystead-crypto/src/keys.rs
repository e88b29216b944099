//! Vault keys: generation, JWK import, and every cryptographic operation Key Vault offers on
//! them (RSA and AES encryption, key wrap, signatures over caller-supplied digests, HMAC).
//!
//! Private keys travel in and out of this module as PKCS#8 DER (RSA, EC) or raw bytes (oct),
//! always in zeroizing buffers; callers seal them before they reach the store. RSA and EC keys
//! are used through [`PrivateKey`], parsed once so callers can keep it across operations. Public parts are
//! big-endian byte strings exactly as a JWK carries them.
//!
//! Errors are deliberately uniform: every failed decryption or unwrap, whatever the padding
//! or tag problem, is the same `CryptoError::Decrypt` (no padding oracle).

use crate::CryptoError;
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey, AES_128, AES_192, AES_256,
};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::key_wrap::{self, AesKek, KeyWrap, KeyWrapPadded};
use aws_lc_rs::rsa::{
    self, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey,
    Pkcs1PublicEncryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair, RsaKeyPair,
    UnparsedPublicKey,
};
use aws_lc_rs::{hmac, rand};
use zeroize::Zeroizing;

/// Elliptic curves (JWK `crv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcCurve {
    P256,
    P384,
    P521,
    P256K,
}

impl EcCurve {
    pub fn coordinate_len(self) -> usize {
        match self {
            EcCurve::P256 | EcCurve::P256K => 32,
            EcCurve::P384 => 48,
            EcCurve::P521 => 66,
        }
    }

    /// The signing algorithm Key Vault pairs with the curve (ES256, ES384, ES512, ES256K).
    fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            EcCurve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            EcCurve::P256K => &signature::ECDSA_P256K1_SHA256_FIXED_SIGNING,
        }
    }

    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            EcCurve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
            EcCurve::P256K => &signature::ECDSA_P256K1_SHA256_FIXED,
        }
    }
}

/// The public half of a generated or imported key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicParts {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { x: Vec<u8>, y: Vec<u8> },
    Oct,
}

/// A key pair ready to be sealed: the private half as PKCS#8 DER (or raw oct bytes).
pub struct NewKey {
    pub private: Zeroizing<Vec<u8>>,
    pub public: PublicParts,
}

fn invalid<E>(_: E) -> CryptoError {
    CryptoError::InvalidKey
}

/// Generates an RSA key. aws-lc-rs generates with the public exponent 65537 only.
pub fn generate_rsa(bits: u32) -> Result<NewKey, CryptoError> {
    let size = match bits {
        2048 => rsa::KeySize::Rsa2048,
        3072 => rsa::KeySize::Rsa3072,
        4096 => rsa::KeySize::Rsa4096,
        _ => return Err(CryptoError::InvalidKey),
    };
    let pair = RsaKeyPair::generate(size).map_err(|_| CryptoError::Internal("RSA generation"))?;
    rsa_new_key(&pair)
}

/// Generates an RSA key with a public exponent other than 65537 (odd, at least 3).
pub fn generate_rsa_with_exponent(bits: u32, exponent: u32) -> Result<NewKey, CryptoError> {
    if !matches!(bits, 2048 | 3072 | 4096) {
        return Err(CryptoError::InvalidKey);
    }
    if exponent == 65537 {
        return generate_rsa(bits);
    }
    let g = crate::rsa_crt::generate_with_exponent(bits, exponent)?;
    import_rsa(&RsaComponents {
        n: &g.n,
        e: &g.e,
        d: &g.d,
        p: &g.crt.p,
        q: &g.crt.q,
        dp: &g.crt.dp,
        dq: &g.crt.dq,
        qi: &g.crt.qi,
    })
}

fn rsa_new_key(pair: &RsaKeyPair) -> Result<NewKey, CryptoError> {
    let der = pair
        .as_der()
        .map_err(|_| CryptoError::Internal("RSA encoding"))?;
    let components = rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    Ok(NewKey {
        private: Zeroizing::new(der.as_ref().to_vec()),
        public: PublicParts::Rsa {
            n: components.n,
            e: components.e,
        },
    })
}

/// RSA private components of an imported JWK (big-endian). The CRT parameters are required.
pub struct RsaComponents<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
    pub dp: &'a [u8],
    pub dq: &'a [u8],
    pub qi: &'a [u8],
}

/// Builds an RSA key from JWK components; refuses inconsistent components.
pub fn import_rsa(c: &RsaComponents<'_>) -> Result<NewKey, CryptoError> {
    let components = rsa::KeyPairComponents {
        public_key: rsa::PublicKeyComponents {
            n: strip_zeros(c.n),
            e: strip_zeros(c.e),
        },
        d: c.d,
        p: c.p,
        q: c.q,
        dP: c.dp,
        dQ: c.dq,
        qInv: c.qi,
    };
    let pair = RsaKeyPair::from_components(&components).map_err(invalid)?;
    rsa_new_key(&pair)
}

/// Builds an RSA key from a JWK that carries only `n`, `e` and `d`: the primes and CRT
/// parameters are recovered first (see `rsa_crt`).
pub fn import_rsa_without_crt(n: &[u8], e: &[u8], d: &[u8]) -> Result<NewKey, CryptoError> {
    let crt = crate::rsa_crt::recover(strip_zeros(n), strip_zeros(e), d)?;
    import_rsa(&RsaComponents {
        n,
        e,
        d,
        p: &crt.p,
        q: &crt.q,
        dp: &crt.dp,
        dq: &crt.dq,
        qi: &crt.qi,
    })
}

/// Generates an EC key on `curve`.
pub fn generate_ec(curve: EcCurve) -> Result<NewKey, CryptoError> {
    let pair = EcdsaKeyPair::generate(curve.signing())
        .map_err(|_| CryptoError::Internal("EC generation"))?;
    ec_new_key(curve, &pair)
}

fn ec_new_key(curve: EcCurve, pair: &EcdsaKeyPair) -> Result<NewKey, CryptoError> {
    let der = pair
        .to_pkcs8v1()
        .map_err(|_| CryptoError::Internal("EC encoding"))?;
    let point = pair.public_key().as_ref();
    let len = curve.coordinate_len();
    // Uncompressed SEC1 point: 0x04 || x || y, each coordinate fixed-size.
    if point.len() != 1 + 2 * len || point[0] != 4 {
        return Err(CryptoError::Internal("unexpected EC point encoding"));
    }
    Ok(NewKey {
        private: Zeroizing::new(der.as_ref().to_vec()),
        public: PublicParts::Ec {
            x: point[1..=len].to_vec(),
            y: point[1 + len..].to_vec(),
        },
    })
}

/// Builds an EC key from JWK `d`, `x`, `y`; the public point must match the private scalar.
pub fn import_ec(curve: EcCurve, d: &[u8], x: &[u8], y: &[u8]) -> Result<NewKey, CryptoError> {
    let len = curve.coordinate_len();
    let point = uncompressed_point(len, x, y)?;
    let d = Zeroizing::new(left_pad(d, len)?);
    let pair = EcdsaKeyPair::from_private_key_and_public_key(curve.signing(), &d, &point)
        .map_err(invalid)?;
    ec_new_key(curve, &pair)
}

/// Generates a symmetric key of `bytes` length.
pub fn generate_oct(bytes: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    crate::random::random_bytes(bytes)
}

/// Random bytes for `/rng`.
pub fn random(count: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    crate::random::random_bytes(count)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Big-endian value left-padded to exactly `len` bytes (JWK EC values may arrive short).
fn left_pad(bytes: &[u8], len: usize) -> Result<Vec<u8>, CryptoError> {
    let bytes = if bytes.len() > len {
        strip_zeros(bytes)
    } else {
        bytes
    };
    if bytes.len() > len {
        return Err(CryptoError::InvalidKey);
    }
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(bytes);
    Ok(out)
}

fn uncompressed_point(len: usize, x: &[u8], y: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend(left_pad(x, len)?);
    point.extend(left_pad(y, len)?);
    Ok(point)
}

// ------------------------------------------------------------------------------- RSA encryption

/// RSA encryption paddings Key Vault offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaPadding {
    /// RSA-OAEP (SHA-1, MGF1-SHA-1).
    OaepSha1,
    /// RSA-OAEP-256 (SHA-256, MGF1-SHA-256).
    OaepSha256,
    /// RSA1_5 (PKCS#1 v1.5).
    Pkcs1,
}

fn oaep(padding: RsaPadding) -> &'static rsa::OaepAlgorithm {
    match padding {
        RsaPadding::OaepSha256 => &rsa::OAEP_SHA256_MGF1SHA256,
        _ => &rsa::OAEP_SHA1_MGF1SHA1,
    }
}

// ------------------------------------------------------------------------------- signatures

/// Hash functions of the signature algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn digest_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn import(self, digest: &[u8]) -> Result<Digest, CryptoError> {
        Digest::import_less_safe(digest, self.digest_alg())
            .map_err(|_| CryptoError::InvalidInput("the digest has the wrong length"))
    }
}

/// RSA signature schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaScheme {
    /// RS256/384/512.
    Pkcs1,
    /// PS256/384/512: salt length = digest length, MGF1 with the same hash.
    Pss,
}

/// Verifies an RSA signature over a digest with the public key `(n, e)`.
pub fn rsa_verify_digest(
    n: &[u8],
    e: &[u8],
    scheme: RsaScheme,
    hash: Hash,
    digest: &[u8],
    sig: &[u8],
) -> Result<bool, CryptoError> {
    let digest = hash.import(digest)?;
    let params: &'static signature::RsaParameters = match (scheme, hash) {
        (RsaScheme::Pkcs1, Hash::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (RsaScheme::Pkcs1, Hash::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (RsaScheme::Pkcs1, Hash::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (RsaScheme::Pss, Hash::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
        (RsaScheme::Pss, Hash::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
        (RsaScheme::Pss, Hash::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
    };
    let public = rsa::PublicKeyComponents {
        n: strip_zeros(n),
        e: strip_zeros(e),
    };
    let parsed = public.to_parsed_public_key(params).map_err(invalid)?;
    Ok(parsed.verify_digest_sig(&digest, sig).is_ok())
}

/// Verifies a JWS `r || s` EC signature over a digest with the public point `(x, y)`.
pub fn ec_verify_digest(
    curve: EcCurve,
    x: &[u8],
    y: &[u8],
    hash: Hash,
    digest: &[u8],
    sig: &[u8],
) -> Result<bool, CryptoError> {
    let digest = hash.import(digest)?;
    let point = uncompressed_point(curve.coordinate_len(), x, y)?;
    let key = UnparsedPublicKey::new(curve.verification(), point);
    Ok(key.verify_digest(&digest, sig).is_ok())
}

/// HMAC (HS256/384/512) over `data` with a symmetric key.
pub fn hmac_sign(key: &[u8], hash: Hash, data: &[u8]) -> Vec<u8> {
    let alg = match hash {
        Hash::Sha256 => hmac::HMAC_SHA256,
        Hash::Sha384 => hmac::HMAC_SHA384,
        Hash::Sha512 => hmac::HMAC_SHA512,
    };
    hmac::sign(&hmac::Key::new(alg, key), data)
        .as_ref()
        .to_vec()
}

/// Constant-time HMAC verification.
pub fn hmac_verify(key: &[u8], hash: Hash, data: &[u8], tag: &[u8]) -> bool {
    let alg = match hash {
        Hash::Sha256 => hmac::HMAC_SHA256,
        Hash::Sha384 => hmac::HMAC_SHA384,
        Hash::Sha512 => hmac::HMAC_SHA512,
    };
    hmac::verify(&hmac::Key::new(alg, key), data, tag).is_ok()
}

// ------------------------------------------------------------------------------- parsed private keys

/// Which aws-lc-rs type a PKCS#8 private key is parsed into. RSA has two: signing and
/// encryption are separate key types in aws-lc-rs, each validated on parsing, so a key is
/// parsed only into the form an operation needs (exactly what each operation parsed before
/// parsed keys were kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyForm {
    /// RS256/384/512, PS256/384/512.
    RsaSigning,
    /// RSA-OAEP, RSA-OAEP-256, RSA1_5 (encryption uses the public half).
    RsaEncryption,
    /// ECDSA on the curve.
    Ec(EcCurve),
}

/// A private key parsed once from PKCS#8 and reusable for any number of operations, from any
/// thread (aws-lc's `EVP_PKEY` is safe for concurrent non-mutating use).
///
/// Parsing is the expensive part of an RSA operation: `from_pkcs8` validates the key, which
/// costs about as much as a signature, so callers that sign repeatedly keep one of these per
/// key version instead of the PKCS#8 bytes (which they wipe once parsed).
///
/// The parsed key lives in memory aws-lc allocated, outside Rust's reach: it cannot be wrapped
/// in `Zeroizing`. Dropping it calls `EVP_PKEY_free`, and aws-lc wipes that memory itself, as
/// checked in the aws-lc source vendored by aws-lc-sys 0.47.0: `RSA_free` and `EC_KEY_free`
/// release every private component (`d`, `p`, `q`, `dmp1`, `dmq1`, `iqmp`, the fixed-width
/// copies, Montgomery contexts and blindings; the EC private scalar) through `BN_free` /
/// `OPENSSL_free`, and `OPENSSL_free` (`crypto/mem.c`) runs `OPENSSL_cleanse` over the whole
/// allocation before freeing it. That holds with aws-lc's default allocator, which aws-lc-rs
/// does not replace; a process that installed its own `OPENSSL_memory_free` would lose it.
pub struct PrivateKey(Parsed);

enum Parsed {
    RsaSigning(RsaKeyPair),
    RsaEncryption(PrivateDecryptingKey),
    Ec(EcCurve, EcdsaKeyPair),
}

impl std::fmt::Debug for PrivateKey {
    // The form only: never anything of the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PrivateKey").field(&self.form()).finish()
    }
}

/// The operation does not fit the form the key was parsed into (a caller bug, not input).
fn wrong_form() -> CryptoError {
    CryptoError::Internal("private key parsed for another operation")
}

impl PrivateKey {
    /// Parses (and validates) a PKCS#8 private key into `form`.
    pub fn from_pkcs8(form: KeyForm, pkcs8: &[u8]) -> Result<PrivateKey, CryptoError> {
        Ok(PrivateKey(match form {
            KeyForm::RsaSigning => {
                Parsed::RsaSigning(RsaKeyPair::from_pkcs8(pkcs8).map_err(invalid)?)
            }
            KeyForm::RsaEncryption => {
                Parsed::RsaEncryption(PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(invalid)?)
            }
            KeyForm::Ec(curve) => Parsed::Ec(
                curve,
                EcdsaKeyPair::from_pkcs8(curve.signing(), pkcs8).map_err(invalid)?,
            ),
        }))
    }

    pub fn form(&self) -> KeyForm {
        match &self.0 {
            Parsed::RsaSigning(_) => KeyForm::RsaSigning,
            Parsed::RsaEncryption(_) => KeyForm::RsaEncryption,
            Parsed::Ec(curve, _) => KeyForm::Ec(*curve),
        }
    }

    /// Encrypts with the public half of an RSA key.
    pub fn rsa_encrypt(
        &self,
        padding: RsaPadding,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let Parsed::RsaEncryption(key) = &self.0 else {
            return Err(wrong_form());
        };
        let public = key.public_key();
        let mut out = vec![0u8; public.key_size_bytes()];
        let len = match padding {
            RsaPadding::OaepSha1 | RsaPadding::OaepSha256 => {
                let alg = oaep(padding);
                let enc = OaepPublicEncryptingKey::new(public).map_err(invalid)?;
                if plaintext.len() > enc.max_plaintext_size(alg) {
                    return Err(CryptoError::InvalidInput(
                        "the plaintext is too long for the key",
                    ));
                }
                enc.encrypt(alg, plaintext, &mut out, None)
                    .map_err(|_| CryptoError::Internal("RSA-OAEP encryption"))?
                    .len()
            }
            RsaPadding::Pkcs1 => {
                let enc = Pkcs1PublicEncryptingKey::new(public).map_err(invalid)?;
                if plaintext.len() > enc.max_plaintext_size() {
                    return Err(CryptoError::InvalidInput(
                        "the plaintext is too long for the key",
                    ));
                }
                enc.encrypt(plaintext, &mut out)
                    .map_err(|_| CryptoError::Internal("RSA1_5 encryption"))?
                    .len()
            }
        };
        out.truncate(len);
        Ok(out)
    }

    /// Decrypts with an RSA key. Every failure is the same `Decrypt` error.
    pub fn rsa_decrypt(
        &self,
        padding: RsaPadding,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let Parsed::RsaEncryption(key) = &self.0 else {
            return Err(wrong_form());
        };
        let mut out = Zeroizing::new(vec![0u8; key.key_size_bytes()]);
        // The padding wrappers take the key by value; cloning it only takes a reference on
        // the same aws-lc `EVP_PKEY` (no copy of the private material).
        let len = match padding {
            RsaPadding::OaepSha1 | RsaPadding::OaepSha256 => {
                let dec = OaepPrivateDecryptingKey::new(key.clone()).map_err(invalid)?;
                dec.decrypt(oaep(padding), ciphertext, &mut out, None)
                    .map_err(|_| CryptoError::Decrypt)?
                    .len()
            }
            RsaPadding::Pkcs1 => {
                let dec = Pkcs1PrivateDecryptingKey::new(key.clone()).map_err(invalid)?;
                dec.decrypt(ciphertext, &mut out)
                    .map_err(|_| CryptoError::Decrypt)?
                    .len()
            }
        };
        out.truncate(len);
        Ok(out)
    }

    /// Signs a caller-supplied digest with an RSA key.
    pub fn rsa_sign_digest(
        &self,
        scheme: RsaScheme,
        hash: Hash,
        digest: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let Parsed::RsaSigning(pair) = &self.0 else {
            return Err(wrong_form());
        };
        let digest = hash.import(digest)?;
        let encoding: &'static dyn signature::RsaEncoding = match (scheme, hash) {
            (RsaScheme::Pkcs1, Hash::Sha256) => &signature::RSA_PKCS1_SHA256,
            (RsaScheme::Pkcs1, Hash::Sha384) => &signature::RSA_PKCS1_SHA384,
            (RsaScheme::Pkcs1, Hash::Sha512) => &signature::RSA_PKCS1_SHA512,
            (RsaScheme::Pss, Hash::Sha256) => &signature::RSA_PSS_SHA256,
            (RsaScheme::Pss, Hash::Sha384) => &signature::RSA_PSS_SHA384,
            (RsaScheme::Pss, Hash::Sha512) => &signature::RSA_PSS_SHA512,
        };
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign_digest(encoding, &digest, &mut sig)
            .map_err(|_| CryptoError::Internal("RSA signing"))?;
        Ok(sig)
    }

    /// Signs a digest with an EC key; the signature is JWS `r || s` with fixed-size halves.
    /// The hash is the curve's own (ES256/P-256, ES384/P-384, ES512/P-521, ES256K/P-256K).
    pub fn ec_sign_digest(&self, hash: Hash, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let Parsed::Ec(_, pair) = &self.0 else {
            return Err(wrong_form());
        };
        let digest = hash.import(digest)?;
        let sig = pair
            .sign_digest(&digest)
            .map_err(|_| CryptoError::InvalidInput("the digest does not match the curve"))?;
        Ok(sig.as_ref().to_vec())
    }
}

// ------------------------------------------------------------------------------- AES

/// AES-GCM output: ciphertext and the 16-byte tag, separately as Key Vault returns them.
pub struct GcmSealed {
    pub ciphertext: Vec<u8>,
    pub tag: Vec<u8>,
}

/// `len` is a whole number of `block`-byte blocks (kept MSRV-friendly: no `is_multiple_of`).
fn whole_blocks(len: usize, block: usize) -> bool {
    len / block * block == len
}

pub const GCM_IV_LEN: usize = 12;
pub const CBC_IV_LEN: usize = 16;

fn gcm_key(key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    let alg = match key.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        _ => return Err(CryptoError::InvalidKey),
    };
    Ok(LessSafeKey::new(
        UnboundKey::new(alg, key).map_err(invalid)?,
    ))
}

/// AES-GCM encryption with a 12-byte IV.
pub fn aes_gcm_encrypt(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<GcmSealed, CryptoError> {
    let key = gcm_key(key)?;
    let nonce = Nonce::try_assume_unique_for_key(iv)
        .map_err(|_| CryptoError::InvalidInput("the GCM iv must be 12 bytes"))?;
    let mut buf = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Internal("AES-GCM encryption"))?;
    Ok(GcmSealed {
        ciphertext: buf,
        tag: tag.as_ref().to_vec(),
    })
}

/// AES-GCM decryption; any failure is `Decrypt`.
pub fn aes_gcm_decrypt(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let key = gcm_key(key)?;
    let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| CryptoError::Decrypt)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(ciphertext.len() + tag.len()));
    buf.extend_from_slice(ciphertext);
    buf.extend_from_slice(tag);
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn cbc_key(key: &[u8]) -> Result<UnboundCipherKey, CryptoError> {
    let alg = match key.len() {
        16 => &AES_128,
        24 => &AES_192,
        32 => &AES_256,
        _ => return Err(CryptoError::InvalidKey),
    };
    UnboundCipherKey::new(alg, key).map_err(invalid)
}

fn cbc_iv(iv: &[u8]) -> Result<FixedLength<16>, CryptoError> {
    let iv: [u8; CBC_IV_LEN] = iv
        .try_into()
        .map_err(|_| CryptoError::InvalidInput("the CBC iv must be 16 bytes"))?;
    Ok(FixedLength::from(iv))
}

/// AES-CBC encryption; `pad` selects PKCS#7 padding (the `CBCPAD` algorithms). Without padding
/// the plaintext must be a whole number of blocks.
pub fn aes_cbc_encrypt(
    key: &[u8],
    iv: &[u8],
    plaintext: &[u8],
    pad: bool,
) -> Result<Vec<u8>, CryptoError> {
    let context = EncryptionContext::Iv128(cbc_iv(iv)?);
    let mut buf = plaintext.to_vec();
    if pad {
        PaddedBlockEncryptingKey::cbc_pkcs7(cbc_key(key)?)
            .map_err(invalid)?
            .less_safe_encrypt(&mut buf, context)
            .map_err(|_| CryptoError::Internal("AES-CBC encryption"))?;
    } else {
        if buf.is_empty() || !whole_blocks(buf.len(), 16) {
            return Err(CryptoError::InvalidInput(
                "without padding the plaintext must be a multiple of 16 bytes",
            ));
        }
        EncryptingKey::cbc(cbc_key(key)?)
            .map_err(invalid)?
            .less_safe_encrypt(&mut buf, context)
            .map_err(|_| CryptoError::Internal("AES-CBC encryption"))?;
    }
    Ok(buf)
}

/// AES-CBC decryption; any failure (including bad padding) is `Decrypt`.
pub fn aes_cbc_decrypt(
    key: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
    pad: bool,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let context = DecryptionContext::Iv128(cbc_iv(iv)?);
    if ciphertext.is_empty() || !whole_blocks(ciphertext.len(), 16) {
        return Err(CryptoError::Decrypt);
    }
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = if pad {
        PaddedBlockDecryptingKey::cbc_pkcs7(cbc_key(key)?)
            .map_err(invalid)?
            .decrypt(&mut buf, context)
            .map_err(|_| CryptoError::Decrypt)?
            .len()
    } else {
        DecryptingKey::cbc(cbc_key(key)?)
            .map_err(invalid)?
            .decrypt(&mut buf, context)
            .map_err(|_| CryptoError::Decrypt)?
            .len()
    };
    buf.truncate(len);
    Ok(buf)
}

/// AES key wrap (RFC 3394) or, with `pad`, key wrap with padding (RFC 5649).
pub fn aes_wrap(key: &[u8], plaintext: &[u8], pad: bool) -> Result<Vec<u8>, CryptoError> {
    if plaintext.is_empty() || (!pad && (!whole_blocks(plaintext.len(), 8) || plaintext.len() < 16))
    {
        return Err(CryptoError::InvalidInput(
            "key wrap needs a key of at least 16 bytes in 8-byte steps (use the padded variant otherwise)",
        ));
    }
    let mut out = vec![0u8; plaintext.len() + 16];
    let len = if key.len() == 24 {
        use aes_kw::KeyInit;
        if pad {
            aes_kw::KwpAes192::new_from_slice(key)
                .map_err(invalid)?
                .wrap_key(plaintext, &mut out)
                .map_err(|_| CryptoError::Internal("AES-KWP"))?
                .len()
        } else {
            aes_kw::KwAes192::new_from_slice(key)
                .map_err(invalid)?
                .wrap_key(plaintext, &mut out)
                .map_err(|_| CryptoError::Internal("AES-KW"))?
                .len()
        }
    } else {
        let kek = aws_kek(key)?;
        if pad {
            kek.wrap_with_padding(plaintext, &mut out)
                .map_err(|_| CryptoError::Internal("AES-KWP"))?
                .len()
        } else {
            kek.wrap(plaintext, &mut out)
                .map_err(|_| CryptoError::Internal("AES-KW"))?
                .len()
        }
    };
    out.truncate(len);
    Ok(out)
}

fn aws_kek(key: &[u8]) -> Result<AesKek, CryptoError> {
    let cipher = match key.len() {
        16 => &key_wrap::AES_128,
        32 => &key_wrap::AES_256,
        _ => return Err(CryptoError::InvalidKey),
    };
    AesKek::new(cipher, key).map_err(invalid)
}

/// Unwraps an AES-KW / AES-KWP blob; any failure is `Decrypt`.
pub fn aes_unwrap(
    key: &[u8],
    wrapped: &[u8],
    pad: bool,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if wrapped.len() < 16 || !whole_blocks(wrapped.len(), 8) {
        return Err(CryptoError::Decrypt);
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let len = if key.len() == 24 {
        use aes_kw::KeyInit;
        if pad {
            aes_kw::KwpAes192::new_from_slice(key)
                .map_err(invalid)?
                .unwrap_key(wrapped, &mut out)
                .map_err(|_| CryptoError::Decrypt)?
                .len()
        } else {
            aes_kw::KwAes192::new_from_slice(key)
                .map_err(invalid)?
                .unwrap_key(wrapped, &mut out)
                .map_err(|_| CryptoError::Decrypt)?
                .len()
        }
    } else {
        let kek = aws_kek(key)?;
        if pad {
            kek.unwrap_with_padding(wrapped, &mut out)
                .map_err(|_| CryptoError::Decrypt)?
                .len()
        } else {
            kek.unwrap(wrapped, &mut out)
                .map_err(|_| CryptoError::Decrypt)?
                .len()
        }
    };
    out.truncate(len);
    Ok(out)
}

/// A fresh random IV of `len` bytes.
pub fn random_iv(len: usize) -> Result<Vec<u8>, CryptoError> {
    let mut iv = vec![0u8; len];
    rand::fill(&mut iv).map_err(|_| CryptoError::Internal("RNG"))?;
    Ok(iv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(hash: Hash, data: &[u8]) -> Vec<u8> {
        digest::digest(hash.digest_alg(), data).as_ref().to_vec()
    }

    fn rsa_signing(pkcs8: &[u8]) -> PrivateKey {
        PrivateKey::from_pkcs8(KeyForm::RsaSigning, pkcs8).unwrap()
    }

    fn rsa_crypt(pkcs8: &[u8]) -> PrivateKey {
        PrivateKey::from_pkcs8(KeyForm::RsaEncryption, pkcs8).unwrap()
    }

    #[test]
    fn private_key_refuses_operations_of_another_form() {
        let rsa = generate_rsa(2048).unwrap();
        let d = sha(Hash::Sha256, b"form");
        let signing = rsa_signing(&rsa.private);
        assert_eq!(signing.form(), KeyForm::RsaSigning);
        assert!(signing
            .rsa_decrypt(RsaPadding::OaepSha256, &[0; 256])
            .is_err());
        assert!(signing.ec_sign_digest(Hash::Sha256, &d).is_err());
        assert!(rsa_crypt(&rsa.private)
            .rsa_sign_digest(RsaScheme::Pss, Hash::Sha256, &d)
            .is_err());
        // An EC key does not parse as RSA, and the debug form shows nothing of the key.
        let ec = generate_ec(EcCurve::P256).unwrap();
        assert!(PrivateKey::from_pkcs8(KeyForm::RsaSigning, &ec.private).is_err());
        let parsed = PrivateKey::from_pkcs8(KeyForm::Ec(EcCurve::P256), &ec.private).unwrap();
        assert_eq!(format!("{parsed:?}"), "PrivateKey(Ec(P256))");
    }

    #[test]
    fn rsa_round_trips() {
        let key = generate_rsa(2048).unwrap();
        let PublicParts::Rsa { n, e } = &key.public else {
            panic!()
        };
        assert_eq!(n.len(), 256);
        assert_eq!(e, &vec![1, 0, 1]);
        for padding in [
            RsaPadding::OaepSha1,
            RsaPadding::OaepSha256,
            RsaPadding::Pkcs1,
        ] {
            let ct = rsa_crypt(&key.private)
                .rsa_encrypt(padding, b"hello")
                .unwrap();
            assert_eq!(
                &rsa_crypt(&key.private).rsa_decrypt(padding, &ct).unwrap()[..],
                b"hello"
            );
            let mut bad = ct.clone();
            bad[10] ^= 1;
            assert!(matches!(
                rsa_crypt(&key.private).rsa_decrypt(padding, &bad),
                Err(CryptoError::Decrypt)
            ));
        }
        for scheme in [RsaScheme::Pkcs1, RsaScheme::Pss] {
            for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
                let d = sha(hash, b"msg");
                let sig = rsa_signing(&key.private)
                    .rsa_sign_digest(scheme, hash, &d)
                    .unwrap();
                assert!(rsa_verify_digest(n, e, scheme, hash, &d, &sig).unwrap());
                let other = sha(hash, b"other");
                assert!(!rsa_verify_digest(n, e, scheme, hash, &other, &sig).unwrap());
            }
        }
        assert!(rsa_signing(&key.private)
            .rsa_sign_digest(RsaScheme::Pss, Hash::Sha256, &[0; 31])
            .is_err());
    }

    #[test]
    fn rsa_import_without_crt_recovers_the_same_key() {
        let key = generate_rsa(2048).unwrap();
        let PublicParts::Rsa { n, e } = &key.public else {
            panic!()
        };
        // Pull d out of the PKCS#8 through a full JWK-style round trip: sign with the original,
        // import from (n, e, d) only, and check the imported key verifies and decrypts alike.
        let d = pkcs8_rsa_private_exponent(&key.private);
        let imported = import_rsa_without_crt(n, e, &d).unwrap();
        assert_eq!(imported.public, key.public);
        let ct = rsa_crypt(&key.private)
            .rsa_encrypt(RsaPadding::OaepSha256, b"crt")
            .unwrap();
        let pt = rsa_crypt(&imported.private)
            .rsa_decrypt(RsaPadding::OaepSha256, &ct)
            .unwrap();
        assert_eq!(&pt[..], b"crt");
        let mut wrong = d.clone();
        let last = wrong.len() - 1;
        wrong[last] ^= 2;
        assert!(import_rsa_without_crt(n, e, &wrong).is_err());
    }

    /// The private exponent from an RSA PKCS#8 document (test helper: walks the DER).
    fn pkcs8_rsa_private_exponent(pkcs8: &[u8]) -> Vec<u8> {
        fn read(der: &[u8]) -> (u8, &[u8], &[u8]) {
            let tag = der[0];
            let (len, start) = if der[1] & 0x80 == 0 {
                (der[1] as usize, 2)
            } else {
                let n = (der[1] & 0x7f) as usize;
                let mut len = 0usize;
                for b in &der[2..2 + n] {
                    len = (len << 8) | *b as usize;
                }
                (len, 2 + n)
            };
            (tag, &der[start..start + len], &der[start + len..])
        }
        let (_, info, _) = read(pkcs8); // PrivateKeyInfo
        let (_, _, rest) = read(info); // version
        let (_, _, rest) = read(rest); // algorithm
        let (_, octets, _) = read(rest); // privateKey OCTET STRING
        let (_, rsa, _) = read(octets); // RSAPrivateKey
        let (_, _, rest) = read(rsa); // version
        let (_, _, rest) = read(rest); // n
        let (_, _, rest) = read(rest); // e
        let (_, d, _) = read(rest); // d
        d.to_vec()
    }

    #[test]
    fn rsa_custom_exponent() {
        let key = generate_rsa_with_exponent(2048, 3).unwrap();
        let PublicParts::Rsa { n, e } = &key.public else {
            panic!()
        };
        assert_eq!(e, &vec![3]);
        assert_eq!(n.len(), 256);
        let d = sha(Hash::Sha256, b"e=3");
        let sig = rsa_signing(&key.private)
            .rsa_sign_digest(RsaScheme::Pss, Hash::Sha256, &d)
            .unwrap();
        assert!(rsa_verify_digest(n, e, RsaScheme::Pss, Hash::Sha256, &d, &sig).unwrap());
        assert!(generate_rsa_with_exponent(2048, 4).is_err());
    }

    #[test]
    fn ec_round_trips() {
        for (curve, hash) in [
            (EcCurve::P256, Hash::Sha256),
            (EcCurve::P384, Hash::Sha384),
            (EcCurve::P521, Hash::Sha512),
            (EcCurve::P256K, Hash::Sha256),
        ] {
            let key = generate_ec(curve).unwrap();
            let PublicParts::Ec { x, y } = &key.public else {
                panic!()
            };
            assert_eq!(x.len(), curve.coordinate_len());
            let d = sha(hash, b"msg");
            let sig = PrivateKey::from_pkcs8(KeyForm::Ec(curve), &key.private)
                .unwrap()
                .ec_sign_digest(hash, &d)
                .unwrap();
            assert_eq!(sig.len(), 2 * curve.coordinate_len());
            assert!(ec_verify_digest(curve, x, y, hash, &d, &sig).unwrap());
            assert!(!ec_verify_digest(curve, x, y, hash, &sha(hash, b"x"), &sig).unwrap());
        }
    }

    #[test]
    fn aes_round_trips() {
        for len in [16, 24, 32] {
            let key = generate_oct(len).unwrap();
            let iv = random_iv(GCM_IV_LEN).unwrap();
            let sealed = aes_gcm_encrypt(&key, &iv, b"aad", b"plain").unwrap();
            let opened = aes_gcm_decrypt(&key, &iv, b"aad", &sealed.ciphertext, &sealed.tag);
            assert_eq!(&opened.unwrap()[..], b"plain");
            assert!(aes_gcm_decrypt(&key, &iv, b"x", &sealed.ciphertext, &sealed.tag).is_err());

            let iv = random_iv(CBC_IV_LEN).unwrap();
            let ct = aes_cbc_encrypt(&key, &iv, b"plain", true).unwrap();
            assert_eq!(
                &aes_cbc_decrypt(&key, &iv, &ct, true).unwrap()[..],
                b"plain"
            );
            let ct = aes_cbc_encrypt(&key, &iv, &[7u8; 32], false).unwrap();
            assert_eq!(
                &aes_cbc_decrypt(&key, &iv, &ct, false).unwrap()[..],
                &[7u8; 32]
            );

            let wrapped = aes_wrap(&key, &[9u8; 32], false).unwrap();
            assert_eq!(wrapped.len(), 40);
            assert_eq!(&aes_unwrap(&key, &wrapped, false).unwrap()[..], &[9u8; 32]);
            let wrapped = aes_wrap(&key, &[9u8; 20], true).unwrap();
            assert_eq!(&aes_unwrap(&key, &wrapped, true).unwrap()[..], &[9u8; 20]);
        }
    }

    #[test]
    fn aes_kw_matches_rfc3394() {
        // RFC 3394 §4.1 (128-bit KEK, 128-bit key) and §4.3 (192-bit KEK, via aes-kw).
        let kek = (0u8..16).collect::<Vec<_>>();
        let data: Vec<u8> = (0u8..16).map(|i| i * 0x11).collect();
        let wrapped = aes_wrap(&kek, &data, false).unwrap();
        assert_eq!(
            wrapped,
            [
                0x1F, 0xA6, 0x8B, 0x0A, 0x81, 0x12, 0xB4, 0x47, 0xAE, 0xF3, 0x4B, 0xD8, 0xFB, 0x5A,
                0x7B, 0x82, 0x9D, 0x3E, 0x86, 0x23, 0x71, 0xD2, 0xCF, 0xE5
            ]
        );
        let kek = (0u8..24).collect::<Vec<_>>();
        let wrapped = aes_wrap(&kek, &data, false).unwrap();
        assert_eq!(
            wrapped,
            [
                0x96, 0x77, 0x8B, 0x25, 0xAE, 0x6C, 0xA4, 0x35, 0xF9, 0x2B, 0x5B, 0x97, 0xC0, 0x50,
                0xAE, 0xD2, 0x46, 0x8A, 0xB8, 0xA1, 0x7A, 0xD8, 0x4E, 0x5D
            ]
        );
    }

    #[test]
    fn jwk_import() {
        use aws_lc_rs::encoding::AsBigEndian;
        let key = generate_ec(EcCurve::P256).unwrap();
        let PublicParts::Ec { x, y } = &key.public else {
            panic!()
        };
        let pair = EcdsaKeyPair::from_pkcs8(EcCurve::P256.signing(), &key.private).unwrap();
        let d = pair.private_key().as_be_bytes().unwrap();
        let imported = import_ec(EcCurve::P256, d.as_ref(), x, y).unwrap();
        assert_eq!(imported.public, key.public);
        let other = generate_ec(EcCurve::P256).unwrap();
        let PublicParts::Ec { x: ox, y: oy } = &other.public else {
            panic!()
        };
        assert!(import_ec(EcCurve::P256, d.as_ref(), ox, oy).is_err());
    }
}
