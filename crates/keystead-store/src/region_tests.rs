//! Region rules in apply: the outbox, read-only secondaries, gap-free replication, snapshots,
//! epoch-checked role changes.

use crate::tests::{name, open, put, vault, version};
use crate::*;
use keystead_model::*;

fn region_state(region: &str, role: RegionRole, epoch: u64, keep: u64) -> RegionState {
    RegionState {
        region: region.into(),
        epoch,
        role,
        primary: "east".into(),
        fenced: false,
        history: vec![EpochStart {
            epoch: 1,
            primary: "east".into(),
            start_seq: 0,
        }],
        outbox_keep: keep,
    }
}

fn configure(store: &Store, state: RegionState) {
    store
        .append_and_apply(&Command::SetRegion {
            expected_epoch: None,
            state,
        })
        .unwrap()
        .1
        .unwrap();
}

#[test]
fn the_primary_numbers_applied_commands_and_keeps_a_bounded_outbox() {
    let (_dir, store) = open();
    configure(&store, region_state("east", RegionRole::Primary, 1, 3));
    for i in 0..5 {
        put(&store, &format!("s{i}"), &format!("v{i}")).unwrap();
    }
    // A refused command (same version id, different record) gets no seq.
    let conflicting = Command::PutVersion {
        vault: vault(),
        kind: ObjectKind::Secret,
        name: name("s0"),
        version: version("v0", 99),
    };
    store.append_and_apply(&conflicting).unwrap().1.unwrap_err();
    let read = store.read().unwrap();
    assert_eq!(read.region_seq().unwrap(), 5);
    let (entries, oldest) = read.region_outbox(1, 10).unwrap();
    assert_eq!(oldest, Some(3));
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(entries.iter().all(|e| e.epoch == 1));
}

#[test]
fn a_secondary_applies_only_the_stream_in_order() {
    let (_primary_dir, primary) = open();
    configure(&primary, region_state("east", RegionRole::Primary, 1, 100));
    for i in 0..3 {
        put(&primary, &format!("s{i}"), &format!("v{i}")).unwrap();
    }
    let (entries, _) = primary.read().unwrap().region_outbox(1, 10).unwrap();

    let (_dir, secondary) = open();
    configure(
        &secondary,
        region_state("west", RegionRole::Secondary, 1, 100),
    );
    // Its own vault commands are refused: read-only.
    let refused = put(&secondary, "mine", "m1").unwrap_err();
    assert!(matches!(refused, ApplyError::Region(_)), "{refused:?}");
    // A gap is refused and changes nothing.
    let gap = secondary
        .append_and_apply(&Command::Replicate {
            entries: entries[1..].to_vec(),
        })
        .unwrap()
        .1;
    assert!(matches!(gap, Err(ApplyError::Region(_))));
    assert_eq!(secondary.read().unwrap().region_seq().unwrap(), 0);
    // In order, with a duplicate prefix skipped.
    for batch in [&entries[..2], &entries[..]] {
        secondary
            .append_and_apply(&Command::Replicate {
                entries: batch.to_vec(),
            })
            .unwrap()
            .1
            .unwrap();
    }
    let read = secondary.read().unwrap();
    assert_eq!(read.region_seq().unwrap(), 3);
    for i in 0..3 {
        assert!(read
            .version(
                &vault(),
                ObjectKind::Secret,
                &name(&format!("s{i}")),
                &format!("v{i}")
            )
            .unwrap()
            .is_some());
    }
}

#[test]
fn a_snapshot_replaces_the_vault_state_and_the_position() {
    let (_primary_dir, primary) = open();
    configure(&primary, region_state("east", RegionRole::Primary, 1, 100));
    put(&primary, "kept", "k1").unwrap();
    let snapshot = primary.export_region_snapshot().unwrap();
    assert_eq!(snapshot.seq, 1);

    let (_dir, secondary) = open();
    configure(
        &secondary,
        region_state("west", RegionRole::Secondary, 1, 100),
    );
    secondary
        .append_and_apply(&Command::InstallRegionSnapshot {
            seq: snapshot.seq,
            epoch: snapshot.epoch,
            state: snapshot.state,
        })
        .unwrap()
        .1
        .unwrap();
    let read = secondary.read().unwrap();
    assert_eq!(read.region_seq().unwrap(), 1);
    assert!(read
        .version(&vault(), ObjectKind::Secret, &name("kept"), "k1")
        .unwrap()
        .is_some());
    // The region's own state survives the snapshot.
    assert_eq!(read.region_state().unwrap().unwrap().region, "west");
}

#[test]
fn role_changes_name_the_epoch_they_expect_and_a_fence_stops_writes() {
    let (_dir, store) = open();
    configure(&store, region_state("east", RegionRole::Primary, 1, 100));
    let again = store
        .append_and_apply(&Command::SetRegion {
            expected_epoch: None,
            state: region_state("east", RegionRole::Primary, 1, 100),
        })
        .unwrap()
        .1;
    assert!(again.is_err(), "a second first configuration is refused");
    let mut fenced = region_state("east", RegionRole::Primary, 1, 100);
    fenced.fenced = true;
    store
        .append_and_apply(&Command::SetRegion {
            expected_epoch: Some(1),
            state: fenced,
        })
        .unwrap()
        .1
        .unwrap();
    assert!(matches!(
        put(&store, "late", "l1"),
        Err(ApplyError::Region(_))
    ));
    let stale = store
        .append_and_apply(&Command::SetRegion {
            expected_epoch: Some(0),
            state: region_state("east", RegionRole::Secondary, 2, 100),
        })
        .unwrap()
        .1;
    assert!(
        stale.is_err(),
        "a change expecting another epoch is refused"
    );
}
