//! Tests of the two Raft files' protocol: the log's move out of the state file, the rule that
//! the log is never purged past the state's durable applied index, and the state's periodic
//! durable commits.

use crate::raft_log::{RAFT_LOG, RAFT_META};
use crate::sim_disk::SimDisk;
use crate::tests::put_command;
use crate::{RaftLogFile, ReplicatedEntry, Store, STATE_SYNC_EVERY};
use redb::{ReadableDatabase, ReadableTable};

const STATE_KEY: &str = "sm_applied";

/// Writes a Raft log into the state file as versions before the split kept it there.
fn write_legacy_log(store: &Store, entries: std::ops::RangeInclusive<u64>) {
    let txn = store.db.begin_write().unwrap();
    {
        let mut log = txn.open_table(RAFT_LOG).unwrap();
        for index in entries {
            log.insert(index, format!("entry {index}").as_bytes())
                .unwrap();
        }
        let mut meta = txn.open_table(RAFT_META).unwrap();
        meta.insert("vote", b"term 7".as_slice()).unwrap();
        meta.insert("committed", b"4".as_slice()).unwrap();
        meta.insert(STATE_KEY, b"applied 3".as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

/// The state file's Raft metadata keys and whether it still has a log table.
fn state_file_raft(store: &Store) -> (Vec<String>, bool) {
    let txn = store.db.begin_read().unwrap();
    let keys = txn
        .open_table(RAFT_META)
        .unwrap()
        .iter()
        .unwrap()
        .map(|row| row.unwrap().0.value().to_string())
        .collect();
    let has_log = match txn.open_table(RAFT_LOG) {
        Ok(_) => true,
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => panic!("{e}"),
    };
    (keys, has_log)
}

fn indexes(log: &RaftLogFile) -> Vec<u64> {
    log.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .unwrap()
        .into_iter()
        .map(|(index, _)| index)
        .collect()
}

#[test]
fn a_log_kept_in_the_state_file_moves_to_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (state_path, log_path) = (dir.path().join("state.redb"), dir.path().join("log.redb"));
    let store = Store::open(&state_path).unwrap();
    write_legacy_log(&store, 1..=5);
    // A move cut off before its rename left a partial file: it does not count.
    std::fs::write(log_path.with_extension("redb.part"), b"half a file").unwrap();

    let log = RaftLogFile::open(&log_path, &store, &[STATE_KEY]).unwrap();
    assert_eq!(indexes(&log), vec![1, 2, 3, 4, 5]);
    assert_eq!(log.get(3).unwrap(), Some(b"entry 3".to_vec()));
    assert_eq!(log.meta_get("vote").unwrap(), Some(b"term 7".to_vec()));
    assert_eq!(log.meta_get("committed").unwrap(), Some(b"4".to_vec()));
    assert_eq!(
        state_file_raft(&store),
        (vec![STATE_KEY.to_string()], false),
        "the state file keeps only the state's own metadata"
    );
    assert_eq!(
        store.raft_meta_get(STATE_KEY).unwrap(),
        Some(b"applied 3".to_vec())
    );

    // A crash after the rename, before the old copy was dropped: the next open drops it and
    // keeps the moved log as it is, with what was appended since.
    log.append(&[(6, b"entry 6".to_vec())], &[]).unwrap();
    log.meta_put("vote", b"term 8").unwrap();
    drop(log);
    write_legacy_log(&store, 1..=2);
    let log = RaftLogFile::open(&log_path, &store, &[STATE_KEY]).unwrap();
    assert_eq!(indexes(&log), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(log.meta_get("vote").unwrap(), Some(b"term 8".to_vec()));
    assert_eq!(
        state_file_raft(&store),
        (vec![STATE_KEY.to_string()], false)
    );
}

#[test]
fn a_new_node_gets_an_empty_log_file_and_an_untouched_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.redb")).unwrap();
    let log = RaftLogFile::open(&dir.path().join("log.redb"), &store, &[STATE_KEY]).unwrap();
    assert!(indexes(&log).is_empty());
    assert_eq!(log.meta_get("vote").unwrap(), None);
    assert_eq!(state_file_raft(&store), (vec![], false));
}

#[test]
fn a_lost_log_file_beside_an_applied_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (state_path, log_path) = (dir.path().join("state.redb"), dir.path().join("log.redb"));
    let store = Store::open(&state_path).unwrap();
    drop(RaftLogFile::open(&log_path, &store, &[STATE_KEY]).unwrap());
    apply(&store, 1);
    std::fs::remove_file(&log_path).unwrap();
    let refused = RaftLogFile::open(&log_path, &store, &[STATE_KEY]);
    assert!(
        matches!(refused, Err(crate::StoreError::MissingRaftLog(_))),
        "{:?}",
        refused.err()
    );
    assert!(!log_path.exists(), "nothing was created in its place");
}

/// A node's two files on one simulated disk.
fn open_on(disk: &SimDisk) -> (Store, RaftLogFile) {
    let [state, log] = disk.backends(["state", "log"]);
    (
        Store::open_on(state).unwrap(),
        RaftLogFile::open_on(log).unwrap(),
    )
}

fn apply(store: &Store, index: u64) {
    let entry = ReplicatedEntry {
        index,
        commands: vec![put_command(&format!("s{index}"), "v1")],
    };
    store
        .apply_replicated(&[entry], STATE_KEY, &index.to_be_bytes())
        .unwrap();
}

fn applied(store: &Store) -> u64 {
    store.read().unwrap().last_applied().unwrap()
}

#[test]
fn every_nth_apply_is_durable_and_the_rest_wait_for_it() {
    let disk = SimDisk::new();
    let (store, _log) = open_on(&disk);
    let n = u64::from(STATE_SYNC_EVERY);
    for index in 1..n {
        apply(&store, index);
    }
    disk.power_loss();
    drop(store);
    let (store, _log) = open_on(&disk);
    assert_eq!(applied(&store), 0, "no apply before the n-th is durable");

    for index in 1..=n + 3 {
        apply(&store, index);
    }
    disk.power_loss();
    drop(store);
    let (store, _log) = open_on(&disk);
    assert_eq!(
        applied(&store),
        n,
        "the n-th apply made itself and those before durable"
    );
}

#[test]
fn the_log_is_purged_only_as_far_as_the_state_is_durable() {
    let disk = SimDisk::new();
    let (store, log) = open_on(&disk);
    let rows: Vec<(u64, Vec<u8>)> = (1..=10).map(|i| (i, vec![i as u8])).collect();
    log.append(&rows, &[]).unwrap();
    for index in 1..=6 {
        apply(&store, index);
    }

    // Past what the state applied: nothing is purged.
    assert!(!log.purge(&store, 8, "purged", b"8").unwrap());
    assert_eq!(indexes(&log), (1..=10).collect::<Vec<_>>());

    // Up to it: the state is made durable first, so a power loss right after the purge finds
    // a state that covers every purged entry.
    assert!(log.purge(&store, 5, "purged", b"5").unwrap());
    disk.power_loss();
    drop((store, log));
    let (store, log) = open_on(&disk);
    assert_eq!(indexes(&log), vec![6, 7, 8, 9, 10]);
    assert_eq!(log.meta_get("purged").unwrap(), Some(b"5".to_vec()));
    assert_eq!(applied(&store), 6);

    // A purge the log has already done changes nothing.
    assert!(log.purge(&store, 3, "purged", b"3").unwrap());
    assert_eq!(log.meta_get("purged").unwrap(), Some(b"5".to_vec()));
}

#[test]
fn a_hole_in_the_log_is_found_after_the_purge_point_and_before_the_last_entry() {
    let disk = SimDisk::new();
    let (store, log) = open_on(&disk);
    assert_eq!(log.first_gap().unwrap(), None, "empty");
    let rows = |indexes: &[u64]| -> Vec<(u64, Vec<u8>)> {
        indexes.iter().map(|i| (*i, vec![*i as u8])).collect()
    };
    log.append(&rows(&[1, 2, 3, 4]), &[]).unwrap();
    assert_eq!(log.first_gap().unwrap(), None, "never purged, no hole");
    // Entries appended past a hole: what a follower's log holds if it accepted entries that
    // follow a snapshot whose install did not finish.
    log.append(&rows(&[7, 8]), &[]).unwrap();
    assert_eq!(log.first_gap().unwrap(), Some(5));
    log.truncate(5).unwrap();
    assert_eq!(log.first_gap().unwrap(), None);

    for index in 1..=3 {
        apply(&store, index);
    }
    assert!(log.purge(&store, 2, "purged", b"2").unwrap());
    assert_eq!(indexes(&log), vec![3, 4]);
    assert_eq!(
        log.first_gap().unwrap(),
        None,
        "purged up to the first entry"
    );
    log.truncate(3).unwrap();
    log.append(&rows(&[4]), &[]).unwrap();
    assert_eq!(
        log.first_gap().unwrap(),
        Some(3),
        "the entry after the purge point is missing"
    );

    log.clear("purged").unwrap();
    assert!(indexes(&log).is_empty());
    assert_eq!(log.meta_get("purged").unwrap(), None);
    assert_eq!(log.first_gap().unwrap(), None);
}
