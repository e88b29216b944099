//! Soft-delete retention through a whole node: a deleted secret stays recoverable until its
//! scheduled purge date and is purged by the retention timer's `purge_expired_now` only after
//! it, which frees the name. Time is moved with `SystemClock::advance` instead of waited for.

use keystead_core::secrets::NewSecret;
use keystead_core::test_support::test_node;
use keystead_core::CoreError;
use keystead_model::{ApplyError, ObjectKind, ObjectName, VaultName};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const DAY: i64 = 86_400;

fn secret(value: &str) -> NewSecret {
    NewSecret {
        value: Zeroizing::new(value.to_string()),
        content_type: None,
        enabled: None,
        not_before: None,
        expires: None,
        tags: BTreeMap::new(),
    }
}

#[tokio::test]
async fn deleted_secret_is_purged_only_after_its_retention() {
    // `t` keeps the node's temporary directory alive for the whole test.
    let t = test_node().await;
    let (node, clock, caller) = (t.node, t.clock, t.caller);
    let vault = VaultName::parse("demo").unwrap();
    let name = ObjectName::parse("db-password").unwrap();
    let kind = ObjectKind::Secret;

    node.set_secret(&caller, &vault, &name, secret("first"))
        .await
        .unwrap();
    let deleted = node
        .delete_object(&caller, &vault, kind, &name)
        .await
        .unwrap();
    let purge_date = deleted
        .object
        .deleted
        .as_ref()
        .unwrap()
        .scheduled_purge_date;
    let deleted_at = deleted.object.deleted.as_ref().unwrap().deleted_date;
    assert_eq!(purge_date, deleted_at + 7 * DAY);
    assert!(purge_date > node.now());

    // Before the scheduled date nothing is due: nothing is purged, the secret stays
    // recoverable and its name stays taken.
    assert_eq!(node.purge_expired_now().await.unwrap(), 0);
    clock.advance(7 * DAY - 60);
    assert!(node.now() < purge_date);
    assert_eq!(node.purge_expired_now().await.unwrap(), 0);
    node.get_deleted(&caller, &vault, kind, &name).unwrap();
    assert!(matches!(
        node.set_secret(&caller, &vault, &name, secret("too early"))
            .await,
        Err(CoreError::Refused(ApplyError::DeletedButRecoverable { .. }))
    ));

    // Past the date (7 days + 1 s after deletion, counted from the start), it is purged once.
    clock.advance(60 + 1);
    assert!(node.now() > purge_date);
    assert_eq!(node.purge_expired_now().await.unwrap(), 1);
    assert_eq!(node.purge_expired_now().await.unwrap(), 0);
    assert!(node.get_deleted(&caller, &vault, kind, &name).is_err());

    // The name is free again: a new secret starts over with one version.
    let fresh = node
        .set_secret(&caller, &vault, &name, secret("second"))
        .await
        .unwrap();
    assert_eq!(fresh.state.object.version_count, 1);
    assert_eq!(
        node.get_secret(&caller, &vault, &name, None)
            .unwrap()
            .value
            .as_str(),
        "second"
    );
}
