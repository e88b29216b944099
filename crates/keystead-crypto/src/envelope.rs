//! Envelope encryption for data at rest.
//!
//! A long-lived key-encryption key (KEK, AES-256) never encrypts data directly. Each
//! [`Kek::seal`] call draws a fresh random data-encryption key (DEK), encrypts the
//! plaintext with it (AES-256-GCM), then wraps the DEK under the KEK (AES-256-GCM again).
//! Both encryptions authenticate the caller's AAD, so a sealed box (or just its wrapped
//! DEK) moved to a different record fails to open. A fresh DEK per call also means the
//! random 96-bit GCM nonces are never at risk of repeating under one data key.
//!
//! The KEK can live in a file (base64 + newline, mode 0600) created on first start.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::random::{fill, hex_lower, sha256};
use crate::CryptoError;

/// Length of the KEK and of every DEK (AES-256).
const KEY_LEN: usize = 32;

/// Domain separator for deriving a KEK's public identifier from its bytes.
const KEK_ID_CONTEXT: &[u8] = b"keystead-kek-id";

/// Upper bound on a key file's size; a valid one is 45 bytes, so anything much larger
/// is not ours and is not worth reading into memory.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// The result of [`Kek::seal`]: everything needed (besides the KEK and the AAD) to
/// recover the plaintext. Plain fields only, so it serializes the same with postcard,
/// JSON or anything else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    /// [`Kek::id`] of the KEK that wrapped the DEK.
    pub kek_id: String,
    /// The DEK, AES-256-GCM encrypted under the KEK (includes the tag).
    pub wrapped_dek: Vec<u8>,
    /// Nonce used to wrap the DEK.
    pub dek_nonce: Vec<u8>,
    /// Nonce used to encrypt the plaintext under the DEK.
    pub nonce: Vec<u8>,
    /// The plaintext, AES-256-GCM encrypted under the DEK (includes the tag).
    pub ciphertext: Vec<u8>,
}

/// A key-encryption key: 32 secret bytes plus a non-secret identifier.
#[derive(Clone)]
pub struct Kek {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for Kek {
    // Only the identifier: the key itself must never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// A new random KEK.
    pub fn generate() -> Result<Kek, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill(key.as_mut_slice())?;
        Ok(Kek::from_array(key))
    }

    /// A KEK from exactly 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, CryptoError> {
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::InvalidKey);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        Ok(Kek::from_array(key))
    }

    /// A KEK from standard (padded) base64 of 32 bytes; surrounding whitespace is
    /// ignored so a trailing newline from a file or env var is harmless.
    pub fn from_base64(text: &str) -> Result<Kek, CryptoError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| CryptoError::InvalidKey)?,
        );
        Kek::from_bytes(&decoded)
    }

    /// The key as standard base64 (what [`Kek::from_base64`] and the key file accept).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.as_slice()))
    }

    /// Loads the KEK from `path`, or, if the file does not exist, generates a new one and
    /// stores it there (mode 0600, created exclusively, fsynced together with its parent
    /// directory so the key survives a crash once this returns).
    ///
    /// Creation uses `create_new`, so two processes racing cannot both install a key:
    /// the loser sees the file and loads it. If writing fails, the half-written file is
    /// removed (best effort); nothing has been sealed with that key yet.
    pub fn load_or_create_file(path: &Path) -> Result<Kek, CryptoError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Kek::load_file(path),
            Err(e) => return Err(e.into()),
        };

        let kek = Kek::generate()?;
        let write_result = (|| -> std::io::Result<()> {
            // Two writes rather than appending "\n" to the secret string, which could
            // reallocate and leave an unwiped copy of the key on the heap.
            file.write_all(kek.to_base64().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            sync_parent_dir(path)
        })();
        if let Err(e) = write_result {
            drop(file);
            // Best effort: leaving an empty/partial file would make every later start fail.
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }
        Ok(kek)
    }

    /// Loads a KEK previously stored by [`Kek::load_or_create_file`] (base64 text,
    /// surrounding whitespace ignored).
    pub fn load_file(path: &Path) -> Result<Kek, CryptoError> {
        use std::io::Read as _;
        let file = std::fs::File::open(path)?;
        let mut text = Zeroizing::new(String::new());
        // Read at most one byte past the limit so oversized files are detected without
        // reading them whole; capacity is reserved up front so the buffer never
        // reallocates (which would leave unwiped copies of the key behind).
        text.reserve(MAX_KEY_FILE_LEN as usize + 1);
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    CryptoError::InvalidKey
                } else {
                    CryptoError::Io(e)
                }
            })?;
        if text.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(CryptoError::InvalidKey);
        }
        Kek::from_base64(&text)
    }

    /// `"kek-"` + 16 hex chars of SHA-256("keystead-kek-id" || key): lets stored boxes
    /// name the KEK they need without revealing anything usable about it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext` under a fresh DEK, wraps the DEK under this KEK; both steps
    /// authenticate `aad`, which must be presented again to [`Kek::open`].
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<SealedBox, CryptoError> {
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        fill(dek.as_mut_slice())?;

        let (nonce, ciphertext) = gcm_seal(dek.as_slice(), aad, plaintext)?;
        let (dek_nonce, wrapped_dek) = gcm_seal(self.key.as_slice(), aad, dek.as_slice())?;

        Ok(SealedBox {
            kek_id: self.id.clone(),
            wrapped_dek,
            dek_nonce: dek_nonce.to_vec(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Reverses [`Kek::seal`]. Fails with [`CryptoError::WrongKek`] if the box names a
    /// different KEK, and with [`CryptoError::Decrypt`] if anything was altered or the
    /// AAD differs.
    pub fn open(&self, aad: &[u8], sealed: &SealedBox) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        // The id is not secret, so an ordinary comparison is fine here.
        if sealed.kek_id != self.id {
            return Err(CryptoError::WrongKek);
        }
        let dek = gcm_open(
            self.key.as_slice(),
            &sealed.dek_nonce,
            aad,
            &sealed.wrapped_dek,
        )?;
        if dek.len() != KEY_LEN {
            return Err(CryptoError::Decrypt);
        }
        gcm_open(&dek, &sealed.nonce, aad, &sealed.ciphertext)
    }

    fn from_array(key: Zeroizing<[u8; KEY_LEN]>) -> Kek {
        let mut input = Zeroizing::new(Vec::with_capacity(KEK_ID_CONTEXT.len() + KEY_LEN));
        input.extend_from_slice(KEK_ID_CONTEXT);
        input.extend_from_slice(key.as_slice());
        let digest = sha256(&input);
        let id = format!("kek-{}", hex_lower(&digest[..8]));
        Kek { id, key }
    }
}

/// AES-256-GCM encryption with a random nonce. Returns (nonce, ciphertext || tag).
fn gcm_seal(
    key: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let key = gcm_key(key)?;
    let mut nonce = [0u8; NONCE_LEN];
    fill(&mut nonce)?;
    // Work in a zeroizing buffer sized for the tag up front (no reallocation), so if
    // sealing fails the plaintext copy is wiped; on success it holds only ciphertext.
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + AES_256_GCM.tag_len()));
    buf.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut *buf,
    )
    .map_err(|_| CryptoError::Internal("AES-GCM encryption failed"))?;
    Ok((nonce, std::mem::take(&mut *buf)))
}

/// AES-256-GCM decryption of ciphertext || tag; the result is wiped on drop.
fn gcm_open(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let key = gcm_key(key)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let plaintext_len = key
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    // Truncation keeps the allocation; Zeroizing wipes the whole capacity on drop.
    buf.truncate(plaintext_len);
    Ok(buf)
}

fn gcm_key(key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::InvalidKey)
}

/// Makes the creation of a file in `path`'s directory durable (the file's own fsync
/// does not cover its directory entry).
#[cfg(unix)]
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for fsync on non-Unix platforms.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let kek = Kek::generate().unwrap();
        let sealed = kek.seal(b"vault/a/secret/x/v1", b"hello world").unwrap();
        assert_eq!(sealed.kek_id, kek.id());
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert_eq!(sealed.dek_nonce.len(), NONCE_LEN);
        assert_eq!(sealed.ciphertext.len(), 11 + 16);
        let opened = kek.open(b"vault/a/secret/x/v1", &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"hello world");
    }

    #[test]
    fn empty_plaintext_round_trip() {
        let kek = Kek::generate().unwrap();
        let sealed = kek.seal(b"", b"").unwrap();
        assert!(kek.open(b"", &sealed).unwrap().is_empty());
    }

    #[test]
    fn fresh_dek_and_nonce_each_time() {
        let kek = Kek::generate().unwrap();
        let a = kek.seal(b"aad", b"same").unwrap();
        let b = kek.seal(b"aad", b"same").unwrap();
        assert_ne!(a.wrapped_dek, b.wrapped_dek);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn wrong_aad_fails() {
        let kek = Kek::generate().unwrap();
        let sealed = kek.seal(b"record-1", b"secret").unwrap();
        assert!(matches!(
            kek.open(b"record-2", &sealed),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn tampered_fields_fail() {
        let kek = Kek::generate().unwrap();
        let sealed = kek.seal(b"aad", b"secret value").unwrap();

        let mut t = sealed.clone();
        t.ciphertext[0] ^= 1;
        assert!(matches!(kek.open(b"aad", &t), Err(CryptoError::Decrypt)));

        let mut t = sealed.clone();
        let last = t.ciphertext.len() - 1;
        t.ciphertext[last] ^= 0x80;
        assert!(matches!(kek.open(b"aad", &t), Err(CryptoError::Decrypt)));

        let mut t = sealed.clone();
        t.wrapped_dek[3] ^= 1;
        assert!(matches!(kek.open(b"aad", &t), Err(CryptoError::Decrypt)));

        let mut t = sealed.clone();
        t.nonce[0] ^= 1;
        assert!(matches!(kek.open(b"aad", &t), Err(CryptoError::Decrypt)));

        let mut t = sealed.clone();
        t.dek_nonce.pop();
        assert!(matches!(kek.open(b"aad", &t), Err(CryptoError::Decrypt)));

        let mut t = sealed;
        t.ciphertext.truncate(5);
        assert!(matches!(kek.open(b"aad", &t), Err(CryptoError::Decrypt)));
    }

    #[test]
    fn swapped_wrapped_dek_fails() {
        let kek = Kek::generate().unwrap();
        let a = kek.seal(b"record-a", b"aaaa").unwrap();
        let b = kek.seal(b"record-b", b"bbbb").unwrap();
        let mut mixed = a.clone();
        mixed.wrapped_dek = b.wrapped_dek.clone();
        mixed.dek_nonce = b.dek_nonce.clone();
        assert!(matches!(
            kek.open(b"record-a", &mixed),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            kek.open(b"record-b", &mixed),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn wrong_kek_fails() {
        let kek = Kek::generate().unwrap();
        let other = Kek::generate().unwrap();
        let sealed = kek.seal(b"aad", b"secret").unwrap();
        assert!(matches!(
            other.open(b"aad", &sealed),
            Err(CryptoError::WrongKek)
        ));
        // Even with a forged id, the other KEK cannot unwrap the DEK.
        let mut forged = sealed;
        forged.kek_id = other.id().to_string();
        assert!(matches!(
            other.open(b"aad", &forged),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn postcard_round_trip() {
        let kek = Kek::generate().unwrap();
        let sealed = kek.seal(b"aad", b"payload").unwrap();
        let bytes = postcard::to_stdvec(&sealed).unwrap();
        let back: SealedBox = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(kek.open(b"aad", &back).unwrap().as_slice(), b"payload");
    }

    #[test]
    fn key_encodings_and_id() {
        let kek = Kek::from_bytes(&[7u8; 32]).unwrap();
        let again = Kek::from_base64(&format!("  {}\n", kek.to_base64().as_str())).unwrap();
        assert_eq!(kek.id(), again.id());
        assert!(kek.id().starts_with("kek-"));
        assert_eq!(kek.id().len(), 4 + 16);
        assert!(kek.id()[4..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        // Deterministic: SHA-256("keystead-kek-id" || key), first 8 bytes.
        let mut input = b"keystead-kek-id".to_vec();
        input.extend_from_slice(&[7u8; 32]);
        assert_eq!(kek.id(), format!("kek-{}", hex_lower(&sha256(&input)[..8])));
        assert_ne!(kek.id(), Kek::from_bytes(&[8u8; 32]).unwrap().id());

        assert!(matches!(
            Kek::from_bytes(&[0u8; 31]),
            Err(CryptoError::InvalidKey)
        ));
        assert!(matches!(
            Kek::from_base64("not base64!"),
            Err(CryptoError::InvalidKey)
        ));
        assert!(matches!(
            Kek::from_base64(&STANDARD.encode([1u8; 16])),
            Err(CryptoError::InvalidKey)
        ));
    }

    #[test]
    fn debug_does_not_print_key() {
        let kek = Kek::from_bytes(&[0xabu8; 32]).unwrap();
        let dbg = format!("{kek:?}");
        assert!(dbg.contains(kek.id()));
        assert!(!dbg.contains(kek.to_base64().as_str()));
    }

    #[test]
    fn load_or_create_file_creates_then_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.key");
        let created = Kek::load_or_create_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", created.to_base64().as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let reloaded = Kek::load_or_create_file(&path).unwrap();
        assert_eq!(reloaded.id(), created.id());
        let loaded = Kek::load_file(&path).unwrap();
        assert_eq!(loaded.id(), created.id());
        let sealed = created.seal(b"x", b"y").unwrap();
        assert_eq!(loaded.open(b"x", &sealed).unwrap().as_slice(), b"y");
    }

    #[test]
    fn load_file_rejects_garbage_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(Kek::load_file(&missing), Err(CryptoError::Io(_))));
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "garbage\n").unwrap();
        assert!(matches!(Kek::load_file(&bad), Err(CryptoError::InvalidKey)));
        // An existing but broken file is never silently replaced by a new key.
        assert!(matches!(
            Kek::load_or_create_file(&bad),
            Err(CryptoError::InvalidKey)
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'A'; 10_000]).unwrap();
        assert!(matches!(Kek::load_file(&big), Err(CryptoError::InvalidKey)));
    }
}
