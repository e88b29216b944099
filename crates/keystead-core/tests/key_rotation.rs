//! The automatic rotation timer with an injectable clock: a key whose policy says "rotate 30
//! days after creation" gets exactly one new version once the clock passes that point, with the
//! policy's expiry, the same parameters, and new material.

use keystead_core::keys::{KeyProps, KeySpec};
use keystead_core::test_support::test_node;
use keystead_model::{
    Curve, KeyOp, KeyType, LifetimeAction, ObjectKind, ObjectName, Payload, PublicKey,
    RotationAction, RotationTrigger, VaultName,
};
use std::sync::Arc;

const DAY: i64 = 86_400;

#[tokio::test]
async fn policy_rotation_happens_once_when_due() {
    // `t` keeps the node's temporary directory alive for the whole test.
    let t = test_node().await;
    let (node, clock, caller) = (t.node, t.clock, t.caller);
    let vault = VaultName::parse("demo").unwrap();
    let name = ObjectName::parse("Rotating").unwrap();

    let spec = KeySpec {
        kty: KeyType::Ec,
        hsm: false,
        key_size: None,
        public_exponent: None,
        curve: Some(Curve::P384),
    };
    let props = KeyProps {
        key_ops: Some(vec![KeyOp::Sign]),
        ..KeyProps::default()
    };
    let first = node
        .create_key(&caller, &vault, &name, spec, props)
        .await
        .unwrap();
    // Another key without a policy must be left alone.
    let other = ObjectName::parse("untouched").unwrap();
    let other_spec = KeySpec {
        kty: KeyType::Oct,
        hsm: false,
        key_size: Some(128),
        public_exponent: None,
        curve: None,
    };
    node.create_key(&caller, &vault, &other, other_spec, KeyProps::default())
        .await
        .unwrap();

    let actions = vec![LifetimeAction {
        action: RotationAction::Rotate,
        trigger: RotationTrigger::AfterCreate("P30D".into()),
    }];
    node.set_rotation_policy(&caller, &vault, &name, actions, Some("P90D".into()))
        .await
        .unwrap();

    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 0, "not due yet");
    clock.advance(29 * DAY);
    assert_eq!(
        node.rotate_due_keys_now().await.unwrap(),
        0,
        "still not due"
    );
    clock.advance(2 * DAY);
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 1, "due now");
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 0, "rotated once");

    let latest = node.get_key(&caller, &vault, &name, None).unwrap();
    assert_eq!(latest.object.version_count, 2);
    assert_ne!(latest.version.version, first.version.version);
    let now = node.now();
    let expires = latest.version.attributes.expires.unwrap();
    assert!((expires - (now + 90 * DAY)).abs() < 5);
    let (Payload::Key { key: new }, Payload::Key { key: old }) =
        (&latest.version.payload, &first.version.payload)
    else {
        panic!("not keys");
    };
    assert_eq!(new.key_ops, vec![KeyOp::Sign]);
    match (&new.public, &old.public) {
        (PublicKey::Ec { crv, x, .. }, PublicKey::Ec { x: old_x, .. }) => {
            assert_eq!(*crv, Curve::P384);
            assert_ne!(x, old_x);
        }
        _ => panic!("expected EC keys"),
    }
    let untouched = node.get_key(&caller, &vault, &other, None).unwrap();
    assert_eq!(untouched.object.version_count, 1);

    // The next rotation is due 30 days after the new version.
    clock.advance(31 * DAY);
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 1);

    // Deleted keys are not rotated; purging removes the policy.
    node.delete_object(&caller, &vault, ObjectKind::Key, &name)
        .await
        .unwrap();
    clock.advance(31 * DAY);
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_timers_rotate_once() {
    // `t` keeps the node's temporary directory alive for the whole test.
    let t = test_node().await;
    let (node, clock, caller) = (t.node, t.clock, t.caller);
    let node = Arc::new(node);
    let vault = VaultName::parse("demo").unwrap();
    let name = ObjectName::parse("busy").unwrap();
    let spec = KeySpec {
        kty: KeyType::Oct,
        hsm: false,
        key_size: Some(256),
        public_exponent: None,
        curve: None,
    };
    node.create_key(&caller, &vault, &name, spec, KeyProps::default())
        .await
        .unwrap();
    let actions = vec![LifetimeAction {
        action: RotationAction::Rotate,
        trigger: RotationTrigger::AfterCreate("P7D".into()),
    }];
    node.set_rotation_policy(&caller, &vault, &name, actions, None)
        .await
        .unwrap();
    clock.advance(8 * DAY);
    // Several timers (as on several nodes) see the same due key at once.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { node.rotate_due_keys_now().await.unwrap() })
        })
        .collect();
    let mut total = 0;
    for run in runs {
        total += run.await.unwrap();
    }
    assert_eq!(total, 1, "exactly one timer's rotation applies");
    let latest = node.get_key(&caller, &vault, &name, None).unwrap();
    assert_eq!(latest.object.version_count, 2);
}

#[tokio::test]
async fn rotation_before_expiry_follows_each_versions_expiry() {
    // `t` keeps the node's temporary directory alive for the whole test.
    let t = test_node().await;
    let (node, clock, caller) = (t.node, t.clock, t.caller);
    let vault = VaultName::parse("demo").unwrap();
    let spec = || KeySpec {
        kty: KeyType::Oct,
        hsm: false,
        key_size: Some(256),
        public_exponent: None,
        curve: None,
    };
    let actions = || {
        vec![LifetimeAction {
            action: RotationAction::Rotate,
            trigger: RotationTrigger::BeforeExpiry("P30D".into()),
        }]
    };
    // Expires in 60 days: due 30 days from now.
    let expiring = ObjectName::parse("expiring").unwrap();
    let props = KeyProps {
        expires: Some(node.now() + 60 * DAY),
        ..KeyProps::default()
    };
    node.create_key(&caller, &vault, &expiring, spec(), props)
        .await
        .unwrap();
    node.set_rotation_policy(&caller, &vault, &expiring, actions(), Some("P90D".into()))
        .await
        .unwrap();
    // Never expires: a before-expiry trigger never fires.
    let forever = ObjectName::parse("forever").unwrap();
    node.create_key(&caller, &vault, &forever, spec(), KeyProps::default())
        .await
        .unwrap();
    node.set_rotation_policy(&caller, &vault, &forever, actions(), None)
        .await
        .unwrap();

    clock.advance(29 * DAY);
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 0, "not due yet");
    clock.advance(2 * DAY);
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 1, "due now");
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 0, "rotated once");
    let latest = node.get_key(&caller, &vault, &expiring, None).unwrap();
    assert_eq!(latest.object.version_count, 2);
    // The new version expires with the policy's expiryTime (90 days), so the next rotation is
    // due 60 days from now, not 30.
    let expires = latest.version.attributes.expires.unwrap();
    assert!((expires - (node.now() + 90 * DAY)).abs() < 5);
    clock.advance(59 * DAY);
    assert_eq!(
        node.rotate_due_keys_now().await.unwrap(),
        0,
        "follows the new expiry"
    );
    clock.advance(2 * DAY);
    assert_eq!(node.rotate_due_keys_now().await.unwrap(), 1);
    let untouched = node.get_key(&caller, &vault, &forever, None).unwrap();
    assert_eq!(untouched.object.version_count, 1);
}
