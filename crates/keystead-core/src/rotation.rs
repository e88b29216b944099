//! The automatic rotation timer: keys whose rotation policy has a due `Rotate` action get a new
//! version. Like retention, the timer only proposes commands (a `PutVersion` with freshly
//! generated, sealed material); replicas never rotate on their own clocks.
//!
//! `Notify` actions are stored and returned but trigger nothing: Keystead has no Event Grid.

use crate::{CoreError, Node};
use keystead_model::{ApplyError, ObjectKind, Payload};
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Rotates every key whose policy says its latest version is due. Returns how many keys
    /// were rotated. One key's failure is logged and does not stop the others.
    pub async fn rotate_due_keys_now(&self) -> Result<u64, CoreError> {
        let now = self.now();
        let policies = self.read()?.rotation_policies()?;
        let mut rotated = 0;
        for (vault, name, policy) in policies {
            let Some(settings) = self.read()?.vault(&vault)? else {
                continue;
            };
            // Deleted keys (and keys gone since the scan) are skipped, not errors.
            let Ok(current) = self.load_version(settings, ObjectKind::Key, &name, None) else {
                continue;
            };
            if !matches!(current.version.payload, Payload::Key { .. }) {
                continue;
            }
            let attributes = &current.version.attributes;
            let due = policy.rotation_due_at(attributes.created, attributes.expires);
            if due.is_none_or(|due| due > now) {
                continue;
            }
            match self.rotate_from(current, true).await {
                Ok(state) => {
                    rotated += 1;
                    tracing::info!(
                        vault = %vault,
                        key = %state.object.name,
                        version = %state.version.version,
                        "rotated key by policy"
                    );
                }
                // Another node's timer rotated it first: nothing to do.
                Err(CoreError::Refused(ApplyError::RotationSuperseded { .. })) => {}
                Err(e) => {
                    tracing::warn!(vault = %vault, key = %name, error = %e, "key rotation failed")
                }
            }
        }
        Ok(rotated)
    }
}

/// Runs the rotation timer forever, checking every `every`.
pub async fn run(node: Arc<Node>, every: Duration) {
    crate::timer::run_every(node, every, "key rotation check", |node| async move {
        node.rotate_due_keys_now().await.map(|_| ())
    })
    .await
}
