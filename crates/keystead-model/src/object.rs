//! Objects (secrets, keys, certificates) and their versions, as the state machine stores them.
//!
//! An object is a name, its current version, how many versions it has and an optional
//! soft-deletion record. The versions themselves, and their creation order, are stored beside
//! it (one row each), so the cost of reading or writing an object does not grow with its
//! number of versions. Versions are immutable apart from their attributes, tags and content
//! type.

use crate::{ObjectName, UnixTime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which collection an object lives in. The string form is the URL collection segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    Secret,
    Key,
    Certificate,
}

impl ObjectKind {
    /// The URL collection name (`secrets`, `keys`, `certificates`).
    pub fn collection(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::Key => "keys",
            ObjectKind::Certificate => "certificates",
        }
    }

    /// The URL collection name of soft-deleted objects.
    pub fn deleted_collection(self) -> &'static str {
        match self {
            ObjectKind::Secret => "deletedsecrets",
            ObjectKind::Key => "deletedkeys",
            ObjectKind::Certificate => "deletedcertificates",
        }
    }

    /// A human word for messages ("Secret", "Key", "Certificate").
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Secret => "Secret",
            ObjectKind::Key => "Key",
            ObjectKind::Certificate => "Certificate",
        }
    }
}

/// Opaque ciphertext produced by the crypto crate (a serialized sealed box). The model and the
/// store never look inside; only `keystead-core` opens it.
///
/// Binary formats (the store) carry the bytes as they are; human-readable ones (the JSON the
/// nodes exchange) carry base64, not an array of numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ciphertext(pub Vec<u8>);

impl Serialize for Ciphertext {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            use base64::Engine;
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Ciphertext {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            use base64::Engine;
            let text = String::deserialize(deserializer)?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Ciphertext)
                .map_err(serde::de::Error::custom)
        } else {
            serde_bytes_vec(deserializer).map(Ciphertext)
        }
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_byte_buf(BytesVisitor)
}

/// Attributes common to every object version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    pub enabled: bool,
    pub not_before: Option<UnixTime>,
    pub expires: Option<UnixTime>,
    pub created: UnixTime,
    pub updated: UnixTime,
}

/// A partial update of a version's mutable fields; `None` leaves a field unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributesPatch {
    pub enabled: Option<bool>,
    pub not_before: Option<UnixTime>,
    pub expires: Option<UnixTime>,
    pub content_type: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
}

impl AttributesPatch {
    /// Applies the patch at time `at`, bumping `updated`.
    pub fn apply_to(&self, version: &mut VersionRecord, at: UnixTime) {
        if let Some(enabled) = self.enabled {
            version.attributes.enabled = enabled;
        }
        if let Some(nbf) = self.not_before {
            version.attributes.not_before = Some(nbf);
        }
        if let Some(exp) = self.expires {
            version.attributes.expires = Some(exp);
        }
        if let Some(content_type) = &self.content_type {
            version.content_type = Some(content_type.clone());
        }
        if let Some(tags) = &self.tags {
            version.tags = tags.clone();
        }
        version.attributes.updated = at;
    }
}

/// What a version carries besides its attributes. Only ciphertext: plaintext never reaches the
/// model, the log or the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Payload {
    /// A secret value, sealed with AAD binding it to vault/name/version.
    Secret { value: Ciphertext },
    /// A key: public half in clear, private half sealed (see [`crate::KeyMaterial`]).
    Key { key: Box<crate::KeyMaterial> },
}

/// One immutable version of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// 32 lower-case hex characters.
    pub version: String,
    pub attributes: Attributes,
    pub tags: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub payload: Payload,
}

/// Soft-deletion state of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub deleted_date: UnixTime,
    pub scheduled_purge_date: UnixTime,
}

/// An object: its name, its current (latest) version, how many versions it has and, while
/// soft-deleted, its deletion record. An object always has at least one version.
///
/// The version ids in creation order are not here: a secret rotated every minute has half a
/// million versions in a year, and every read and write of the object would decode them all.
/// The store keeps them in an index of their own (`keystead-store`'s `version_order` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub name: ObjectName,
    pub kind: ObjectKind,
    /// The id of the latest version: the one a read without a version gets.
    pub current_version: String,
    /// How many versions the object has; also the creation-order position of the next one.
    pub version_count: u64,
    pub deleted: Option<Deletion>,
}

impl ObjectRecord {
    /// A new object with its first version.
    pub fn new(name: ObjectName, kind: ObjectKind, first_version: String) -> ObjectRecord {
        ObjectRecord {
            name,
            kind,
            current_version: first_version,
            version_count: 1,
            deleted: None,
        }
    }

    pub fn latest_version(&self) -> &str {
        &self.current_version
    }
}
