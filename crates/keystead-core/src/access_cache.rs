//! Access decisions remembered until the state changes: "this principal exists" and "this
//! caller may do this action on this vault (or object), whose settings are these". Reading them
//! takes two redb read transactions per request (the principal, then the vault and the
//! caller's role assignments), about a tenth of the server's CPU on a small request such as an
//! ES256 sign.
//!
//! Every entry is tagged with the store's generation ([`keystead_store::Store::generation`])
//! loaded *before* the read it was decided from, and is used only while the generation is
//! still the same. Any write to the state (a role removed, a principal deleted, a vault deleted,
//! a snapshot installed, or any other command) moves the generation and so forgets everything:
//! a decision is never older than the state a fresh read would see. Only grants are
//! remembered; refusals are decided again each time.

use keystead_model::{Action, ObjectKind, ObjectName, VaultName, VaultSettings};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// Most grants (and, separately, principals) remembered; when full, the set starts over.
pub(crate) const CAPACITY: usize = 4096;

/// What a grant was decided for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GrantKey {
    pub client_id: String,
    pub vault: VaultName,
    pub action: Action,
    pub object: Option<(ObjectKind, ObjectName)>,
}

#[derive(Default)]
struct Remembered {
    /// The generation every entry below was read at.
    generation: u64,
    principals: HashSet<String>,
    grants: HashMap<GrantKey, VaultSettings>,
}

pub(crate) struct AccessCache {
    remembered: Mutex<Remembered>,
    capacity: usize,
}

impl AccessCache {
    pub(crate) fn new(capacity: usize) -> AccessCache {
        AccessCache {
            remembered: Mutex::new(Remembered::default()),
            capacity,
        }
    }

    /// Whether `client_id` was found to exist at `generation`.
    pub(crate) fn knows_principal(&self, generation: u64, client_id: &str) -> bool {
        let remembered = self.lock();
        remembered.generation == generation && remembered.principals.contains(client_id)
    }

    /// Records that `client_id` exists, as read after loading `generation`.
    pub(crate) fn remember_principal(&self, generation: u64, client_id: &str) {
        let capacity = self.capacity;
        self.update(generation, |r| {
            if r.principals.len() >= capacity {
                r.principals.clear();
            }
            r.principals.insert(client_id.to_string());
        });
    }

    /// The vault's settings if `key` was granted at `generation`.
    pub(crate) fn granted(&self, generation: u64, key: &GrantKey) -> Option<VaultSettings> {
        let remembered = self.lock();
        if remembered.generation != generation {
            return None;
        }
        remembered.grants.get(key).cloned()
    }

    /// Records a grant decided from a read made after loading `generation`.
    pub(crate) fn remember_grant(&self, generation: u64, key: GrantKey, settings: VaultSettings) {
        let capacity = self.capacity;
        self.update(generation, |r| {
            if r.grants.len() >= capacity {
                r.grants.clear();
            }
            r.grants.insert(key, settings);
        });
    }

    /// Runs `add` on the entries of `generation`: a newer generation first forgets everything;
    /// an older one (a read that raced a write) adds nothing.
    fn update(&self, generation: u64, add: impl FnOnce(&mut Remembered)) {
        if self.capacity == 0 {
            return;
        }
        let mut remembered = self.lock();
        if generation > remembered.generation {
            *remembered = Remembered {
                generation,
                ..Remembered::default()
            };
        }
        if generation == remembered.generation {
            add(&mut remembered);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        // A poisoned lock holds consistent sets (each update is one set operation).
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keystead_model::access::actions;

    fn key(client: &str) -> GrantKey {
        GrantKey {
            client_id: client.to_string(),
            vault: VaultName::parse("demo").unwrap(),
            action: actions::KEY_SIGN,
            object: None,
        }
    }

    fn settings() -> VaultSettings {
        VaultSettings {
            name: VaultName::parse("demo").unwrap(),
            retention_days: 90,
            purge_protection: false,
            created: 0,
        }
    }

    #[test]
    fn entries_hold_only_for_their_generation() {
        let cache = AccessCache::new(CAPACITY);
        cache.remember_grant(3, key("a"), settings());
        cache.remember_principal(3, "a");
        assert_eq!(cache.granted(3, &key("a")), Some(settings()));
        assert!(cache.knows_principal(3, "a"));
        assert_eq!(cache.granted(3, &key("b")), None);
        assert!(!cache.knows_principal(3, "b"));
        // The state moved on: nothing from generation 3 is used.
        assert_eq!(cache.granted(4, &key("a")), None);
        assert!(!cache.knows_principal(4, "a"));
        // A read that raced a write (older generation) neither adds nor clears.
        cache.remember_grant(2, key("b"), settings());
        assert_eq!(cache.granted(2, &key("b")), None);
        assert_eq!(cache.granted(3, &key("a")), Some(settings()));
        // A newer generation starts over.
        cache.remember_principal(5, "b");
        assert!(cache.knows_principal(5, "b"));
        assert_eq!(cache.granted(5, &key("a")), None);
        assert_eq!(cache.granted(3, &key("a")), None);
    }

    #[test]
    fn a_full_cache_starts_over_and_capacity_zero_keeps_nothing() {
        let cache = AccessCache::new(2);
        cache.remember_grant(1, key("a"), settings());
        cache.remember_grant(1, key("b"), settings());
        cache.remember_grant(1, key("c"), settings());
        assert_eq!(cache.granted(1, &key("a")), None);
        assert_eq!(cache.granted(1, &key("c")), Some(settings()));
        let off = AccessCache::new(0);
        off.remember_grant(1, key("a"), settings());
        off.remember_principal(1, "a");
        assert_eq!(off.granted(1, &key("a")), None);
        assert!(!off.knows_principal(1, "a"));
    }
}

/// Through `Node::authorize`: a remembered grant stops holding as soon as the state changes,
/// whatever the change (the vault deleted, purge protection turned on, a narrower role left).
#[cfg(test)]
mod node_tests {
    use crate::test_support::test_node;
    use crate::CoreError;
    use keystead_model::access::actions;
    use keystead_model::{ObjectKind, ObjectName, VaultName};

    #[tokio::test]
    async fn remembered_grants_follow_every_change_of_state() {
        let t = test_node().await;
        let node = &t.node;
        let vault = VaultName::parse("demo").unwrap();
        let name = ObjectName::parse("k1").unwrap();
        let object = Some((ObjectKind::Key, &name));
        let settings = node
            .authorize(&t.caller, &vault, actions::KEY_SIGN, object)
            .unwrap();
        assert!(!settings.purge_protection);
        // Remembered: the same answer, with no read.
        let generation = node.store.generation();
        assert!(node
            .access
            .granted(generation, &grant(&t.caller.client_id, &vault, &name))
            .is_some());
        // Settings change: the next decision carries the new ones.
        node.enable_purge_protection(&vault).await.unwrap();
        let settings = node
            .authorize(&t.caller, &vault, actions::KEY_SIGN, object)
            .unwrap();
        assert!(settings.purge_protection);
        // A role scoped to one other key does not keep the vault-wide grant alive.
        node.assign_role(
            &t.caller.client_id,
            "Key Vault Crypto User",
            "demo",
            Some("/keys/other"),
        )
        .await
        .unwrap();
        node.remove_role(&t.assignment_id).await.unwrap();
        assert!(matches!(
            node.authorize(&t.caller, &vault, actions::KEY_SIGN, object),
            Err(CoreError::Forbidden { .. })
        ));
        let other = ObjectName::parse("other").unwrap();
        assert!(node
            .authorize(
                &t.caller,
                &vault,
                actions::KEY_SIGN,
                Some((ObjectKind::Key, &other))
            )
            .is_ok());
        // The vault goes: even the remembered grant on `other` goes with it.
        node.delete_vault(&vault).await.unwrap();
        assert!(matches!(
            node.authorize(
                &t.caller,
                &vault,
                actions::KEY_SIGN,
                Some((ObjectKind::Key, &other))
            ),
            Err(CoreError::VaultNotFound(_))
        ));
    }

    fn grant(client: &str, vault: &VaultName, name: &ObjectName) -> super::GrantKey {
        super::GrantKey {
            client_id: client.to_string(),
            vault: vault.clone(),
            action: actions::KEY_SIGN,
            object: Some((ObjectKind::Key, name.clone())),
        }
    }
}
