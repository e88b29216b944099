//! A simulated disk for redb, for tests that crash nodes: it remembers what has been fsync'd
//! apart from what has merely been written, so a test can pull the power and see what a real
//! machine would find when it boots again.
//!
//! The disk holds named files (one machine's: a node keeps its state and its Raft log in two),
//! each as two images. Reads see the *volatile* one (the OS page cache: every write so far); the
//! *durable* one is what is on the platter. `write` and `set_len` change only the volatile image
//! and are remembered as pending; `sync_data` (redb's fsync) makes that file's pending changes
//! durable. The power is the machine's, so every fault below hits all files at once:
//!
//! - [`SimDisk::power_loss`] discards every unsynced change;
//! - [`SimDisk::power_loss_torn`] keeps a seeded random subset of them, sector by sector and in
//!   any order, as a disk that had written some of its cache back when the power went;
//! - [`SimDisk::kill`] is a process crash: the page cache survives, nothing is lost;
//! - [`SimDisk::arm_power_loss`] makes the power fail *inside* a later sync, when a commit has
//!   written its pages but not yet made them durable — the moment a commit protocol is tested.
//!   (redb keeps the pages of `Durability::None` commits in its own memory until the next durable
//!   commit, so between commits the page cache is usually clean and a power loss there costs no
//!   more than the process's memory.)
//!
//! Each of them also ends the running *boot*: a [`SimBackend`] is tied to the boot it was made
//! in and fails every call once that boot is over, so a crashed instance still being torn down
//! (a `Database` flushing on drop, a blocking task finishing a commit) can neither change what
//! the next boot finds nor read it. A test cuts the power first, then drops the old instance, then
//! opens a new one on [`SimDisk::backend`] (one file) or [`SimDisk::backends`] (several).
//!
//! Not for production: compiled for this crate's tests and behind the `sim` feature.

use redb::StorageBackend;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The unit a torn power loss keeps or drops: the page size of most disks, and redb's.
const SECTOR: u64 = 4096;

/// The file [`SimDisk::backend`] opens, for stores that keep everything in one file.
const MAIN_FILE: &str = "main";

/// A simulated disk of one machine; clones share it. It holds named files (a node keeps its
/// state and its Raft log in two) that lose their power together. Keep one across a node's
/// crashes and open each boot's stores on [`SimDisk::backends`] (or [`SimDisk::backend`]).
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

#[derive(Default)]
struct DiskState {
    files: BTreeMap<String, FileImage>,
    /// The running boot; backends of earlier boots are dead.
    boot: u64,
    /// Syncs (of any file) still to go before an armed power loss, and how it tears.
    armed: Option<(u64, Option<u64>)>,
    /// An armed power loss happened and nobody asked yet.
    tripped: bool,
    stats: DiskStats,
}

#[derive(Default)]
struct FileImage {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last sync, in the order they were made.
    pending: Vec<Change>,
}

enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// What happened to a disk, for tests that want to show their faults were real.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub syncs: u64,
    pub power_losses: u64,
    pub kills: u64,
    /// Unsynced changes (writes and length changes) lost to power losses.
    pub lost_changes: u64,
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// A backend for a new boot of this disk's main file, to open a store on. Any earlier
    /// boot's backends are dead from now on, as if that process had exited (nothing is lost).
    pub fn backend(&self) -> SimBackend {
        let [backend] = self.backends([MAIN_FILE]);
        backend
    }

    /// Backends for a new boot, one per named file (created empty if new). Any earlier boot's
    /// backends are dead from now on, as if that process had exited (nothing is lost).
    pub fn backends<const N: usize>(&self, files: [&str; N]) -> [SimBackend; N] {
        let mut state = self.lock();
        state.boot += 1;
        let boot = state.boot;
        files.map(|file| {
            state.files.entry(file.to_string()).or_default();
            SimBackend {
                state: self.state.clone(),
                boot,
                file: file.to_string(),
            }
        })
    }

    /// The process died: the running boot's backends go dead; every write they made stays (it is
    /// in the page cache, which the OS writes back in its own time).
    pub fn kill(&self) {
        let mut state = self.lock();
        state.boot += 1;
        state.stats.kills += 1;
    }

    /// The machine lost power: the running boot's backends go dead and every change since the
    /// last sync, in every file, is lost.
    pub fn power_loss(&self) {
        self.lock().lose_power(None);
    }

    /// The machine lost power after the disk had written back an arbitrary part of its cache:
    /// each unsynced length change and each sector of each unsynced write is kept or lost by a
    /// coin toss from `seed`; the kept ones land in the order they were made.
    pub fn power_loss_torn(&self, seed: u64) {
        self.lock().lose_power(Some(seed));
    }

    /// The power will fail during the `syncs`-th sync from now, of any file (1 = the next):
    /// that sync fails, and every file's unsynced changes, including those it was to make
    /// durable, are lost (or torn with `torn`'s seed) as in [`SimDisk::power_loss`].
    /// [`SimDisk::tripped`] tells when it happened.
    pub fn arm_power_loss(&self, syncs: u64, torn: Option<u64>) {
        self.lock().armed = Some((syncs.max(1), torn));
    }

    /// Cancels an armed power loss that has not happened.
    pub fn disarm(&self) {
        self.lock().armed = None;
    }

    /// Whether an armed power loss has happened since the last call.
    pub fn tripped(&self) -> bool {
        std::mem::take(&mut self.lock().tripped)
    }

    /// Changes made since the last sync, in every file.
    pub fn unsynced_changes(&self) -> usize {
        self.lock().files.values().map(|f| f.pending.len()).sum()
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panicking test thread may poison the lock; the images are still consistent (every
        // change is made under the lock in one step), so read through it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `redb::StorageBackend` of one file in one boot of a [`SimDisk`].
pub struct SimBackend {
    state: Arc<Mutex<DiskState>>,
    boot: u64,
    file: String,
}

impl fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimBackend")
            .field("boot", &self.boot)
            .field("file", &self.file)
            .finish()
    }
}

impl DiskState {
    /// Ends the boot and keeps, of every file's unsynced changes, none or (`torn`) a seeded
    /// subset.
    fn lose_power(&mut self, torn: Option<u64>) {
        let mut coin = torn.map(SplitMix);
        let mut lost = 0;
        for file in self.files.values_mut() {
            let mut image = file.durable.clone();
            match &mut coin {
                None => lost += file.pending.len() as u64,
                Some(coin) => {
                    for change in &file.pending {
                        if !apply_torn(&mut image, change, coin) {
                            lost += 1;
                        }
                    }
                }
            }
            file.pending.clear();
            // What reached the platter is now all there is, and it is durable.
            file.durable = image.clone();
            file.volatile = image;
        }
        self.boot += 1;
        self.armed = None;
        self.stats.power_losses += 1;
        self.stats.lost_changes += lost;
    }
}

/// Applies the parts of `change` the coin keeps; true if it kept all of it.
fn apply_torn(image: &mut Vec<u8>, change: &Change, coin: &mut SplitMix) -> bool {
    match change {
        Change::SetLen(len) => {
            let kept = coin.toss();
            if kept {
                resize(image, *len);
            }
            kept
        }
        Change::Write { offset, data } => {
            let mut kept_all = true;
            let end = offset + data.len() as u64;
            let mut at = *offset;
            while at < end {
                let sector_end = ((at / SECTOR + 1) * SECTOR).min(end);
                if coin.toss() {
                    let from = (at - offset) as usize;
                    let to = (sector_end - offset) as usize;
                    write_at(image, at, &data[from..to]);
                } else {
                    kept_all = false;
                }
                at = sector_end;
            }
            kept_all
        }
    }
}

/// The disk's state while a backend's boot runs: the lock, and the backend's file in it.
struct Live<'a> {
    state: MutexGuard<'a, DiskState>,
    file: &'a str,
}

impl Live<'_> {
    fn file(&mut self) -> &mut FileImage {
        self.state.files.entry(self.file.to_string()).or_default()
    }
}

impl SimBackend {
    /// The disk's state, or an error once this backend's boot is over.
    fn live(&self) -> io::Result<Live<'_>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.boot != self.boot {
            return Err(io::Error::other("sim disk: this boot is over (crash)"));
        }
        Ok(Live {
            state,
            file: &self.file,
        })
    }
}

impl StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.live()?.file().volatile.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let mut live = self.live()?;
        let file = live.file();
        let source = usize::try_from(offset)
            .ok()
            .and_then(|from| file.volatile.get(from..from.checked_add(out.len())?))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "read past the end"))?;
        out.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut live = self.live()?;
        let file = live.file();
        resize(&mut file.volatile, len);
        file.pending.push(Change::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut live = self.live()?;
        if let Some((syncs, torn)) = live.state.armed {
            if syncs <= 1 {
                live.state.lose_power(torn);
                live.state.tripped = true;
                return Err(io::Error::other("sim disk: the power failed during sync"));
            }
            live.state.armed = Some((syncs - 1, torn));
        }
        let file = live.file();
        let FileImage {
            durable, pending, ..
        } = file;
        for change in pending.drain(..) {
            match change {
                Change::SetLen(len) => resize(durable, len),
                Change::Write { offset, data } => write_at(durable, offset, &data),
            }
        }
        live.state.stats.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut live = self.live()?;
        let file = live.file();
        write_at(&mut file.volatile, offset, data);
        file.pending.push(Change::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

/// Sets the image's length; new bytes are zero.
fn resize(image: &mut Vec<u8>, len: u64) {
    image.resize(len as usize, 0);
}

/// Writes `data` at `offset`, growing the image (with zeros) as a file grows.
fn write_at(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

/// A small seeded generator (SplitMix64): enough for coin tosses, and no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn toss(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{name, put_command, vault};
    use crate::Store;
    use keystead_model::{Command, ObjectKind, VaultSettings};
    use redb::{Durability, ReadableDatabase, TableDefinition};

    #[test]
    fn an_unsynced_write_is_lost_with_the_power_and_a_synced_one_stays() {
        let disk = SimDisk::new();
        let backend = disk.backend();
        backend.write(0, b"synced").unwrap();
        backend.sync_data().unwrap();
        backend.write(0, b"lost").unwrap();
        backend.set_len(100).unwrap();
        assert_eq!(disk.unsynced_changes(), 2);

        disk.power_loss();
        assert!(
            backend.read(0, &mut [0; 1]).is_err(),
            "the old boot is over"
        );
        assert!(backend.write(0, b"late").is_err());
        let backend = disk.backend();
        assert_eq!(backend.len().unwrap(), 6);
        let mut out = [0; 6];
        backend.read(0, &mut out).unwrap();
        assert_eq!(&out, b"synced");
        assert_eq!(disk.stats().lost_changes, 2);
    }

    #[test]
    fn files_sync_on_their_own_and_lose_power_together() {
        let disk = SimDisk::new();
        let [a, b] = disk.backends(["a", "b"]);
        a.write(0, b"a synced").unwrap();
        a.sync_data().unwrap();
        b.write(0, b"b unsynced").unwrap();
        a.write(0, b"a lost").unwrap();
        assert_eq!(
            disk.unsynced_changes(),
            2,
            "a's sync did not make b's write durable"
        );

        disk.arm_power_loss(1, None);
        assert!(a.sync_data().is_err(), "the power failed in a's sync");
        assert!(disk.tripped());
        assert!(b.write(0, b"late").is_err(), "b's boot is over too");
        let [a, b] = disk.backends(["a", "b"]);
        let mut out = [0; 8];
        a.read(0, &mut out).unwrap();
        assert_eq!(&out, b"a synced");
        assert_eq!(b.len().unwrap(), 0);
    }

    #[test]
    fn a_killed_process_loses_nothing_but_its_handle() {
        let disk = SimDisk::new();
        let backend = disk.backend();
        backend.write(0, b"cached").unwrap();
        disk.kill();
        assert!(backend.sync_data().is_err());
        let mut out = [0; 6];
        disk.backend().read(0, &mut out).unwrap();
        assert_eq!(&out, b"cached");
    }

    #[test]
    fn a_torn_power_loss_keeps_some_sectors_of_unsynced_writes() {
        let kept = |seed| {
            let disk = SimDisk::new();
            let backend = disk.backend();
            backend.set_len(64 * SECTOR).unwrap();
            backend.sync_data().unwrap();
            backend.write(0, &vec![7; (64 * SECTOR) as usize]).unwrap();
            disk.power_loss_torn(seed);
            let backend = disk.backend();
            let mut image = vec![0; (64 * SECTOR) as usize];
            backend.read(0, &mut image).unwrap();
            // Whole sectors only: a sector is all old or all new.
            let sectors: Vec<bool> = image
                .chunks(SECTOR as usize)
                .map(|s| {
                    assert!(s.iter().all(|b| *b == s[0]), "a torn sector");
                    s[0] == 7
                })
                .collect();
            sectors
        };
        let first = kept(1);
        assert!(first.iter().any(|k| *k) && first.iter().any(|k| !*k));
        assert_eq!(first, kept(1), "the same seed tears the same way");
        assert_ne!(first, kept(2));
    }

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn put_value(db: &redb::Database, value: u64, durability: Durability) {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(durability).unwrap();
        txn.open_table(T).unwrap().insert("k", value).unwrap();
        txn.commit().unwrap();
    }

    fn value(db: &redb::Database) -> Option<u64> {
        let txn = db.begin_read().unwrap();
        let table = match txn.open_table(T) {
            Err(redb::TableError::TableDoesNotExist(_)) => return None,
            table => table.unwrap(),
        };
        let value = table.get("k").unwrap().map(|v| v.value());
        value
    }

    fn open(disk: &SimDisk) -> redb::Database {
        redb::Database::builder()
            .create_with_backend(disk.backend())
            .unwrap()
    }

    /// What the replication crate relies on: a `Durability::None` commit is lost with the power
    /// (the database reopens at the last durable commit), and a later durable commit makes it
    /// durable too. (redb holds such a commit's pages in its own memory, so a torn power loss
    /// finds little or nothing unsynced here; the next test cuts the power inside a commit.)
    #[test]
    fn redb_reopens_at_the_last_durable_commit_after_a_power_loss() {
        for torn in [None, Some(3)] {
            let disk = SimDisk::new();
            let db = open(&disk);
            put_value(&db, 1, Durability::Immediate);
            put_value(&db, 2, Durability::None);
            assert_eq!(value(&db), Some(2));
            match torn {
                None => disk.power_loss(),
                Some(seed) => disk.power_loss_torn(seed),
            }
            drop(db);
            let db = open(&disk);
            assert_eq!(value(&db), Some(1), "torn: {torn:?}");

            put_value(&db, 3, Durability::None);
            put_value(&db, 4, Durability::Immediate);
            put_value(&db, 5, Durability::None);
            disk.power_loss();
            drop(db);
            assert_eq!(value(&open(&disk)), Some(4), "torn: {torn:?}");
        }
    }

    /// A power loss inside a durable commit (its pages written, the sync not done): the commit
    /// fails, and the database reopens at the commit before it, however the pages tore.
    #[test]
    fn a_commit_cut_off_in_its_sync_is_not_there_after_reboot() {
        for torn in [None, Some(1), Some(2), Some(3), Some(4)] {
            let disk = SimDisk::new();
            let db = open(&disk);
            put_value(&db, 1, Durability::Immediate);
            disk.arm_power_loss(1, torn);
            let txn = db.begin_write().unwrap();
            txn.open_table(T).unwrap().insert("k", 2).unwrap();
            assert!(txn.commit().is_err(), "the sync failed");
            assert!(disk.tripped());
            assert!(!disk.tripped(), "told once");
            assert!(
                disk.stats().lost_changes > 0,
                "the commit had written pages"
            );
            drop(db);
            assert_eq!(value(&open(&disk)), Some(1), "torn: {torn:?}");
        }
    }

    /// Many random histories of durable and non-durable commits, each big enough to span
    /// pages, cut by every kind of power loss: a reboot finds the last durable commit or a later
    /// one, never an earlier one.
    #[test]
    fn no_durable_commit_is_lost_to_any_power_loss() {
        const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");
        for seed in 0..300 {
            let disk = SimDisk::new();
            let mut rng = SplitMix(seed);
            let mut db = open(&disk);
            let (mut durable, mut latest) = (0, 0);
            for step in 1..=80u64 {
                let action = rng.next() % 13;
                if action < 9 {
                    let mut txn = db.begin_write().unwrap();
                    let lazy = action < 6;
                    if lazy {
                        txn.set_durability(Durability::None).unwrap();
                    }
                    {
                        let mut rows = txn.open_table(ROWS).unwrap();
                        for i in 0..rng.next() % 40 {
                            rows.insert(step * 100 + i, vec![step as u8; 300].as_slice())
                                .unwrap();
                        }
                        let cut = step.saturating_sub(rng.next() % 10) * 100;
                        rows.retain_in(..cut, |_, _| false).unwrap();
                    }
                    txn.open_table(T).unwrap().insert("k", step).unwrap();
                    txn.commit().unwrap();
                    latest = step;
                    if !lazy {
                        durable = step;
                    }
                    continue;
                }
                match action {
                    9 => disk.power_loss(),
                    10 => disk.power_loss_torn(rng.next()),
                    12 => disk.kill(),
                    _ => {
                        let torn = rng.toss().then(|| rng.next());
                        disk.arm_power_loss(1, torn);
                        let attempt = || -> Result<(), redb::Error> {
                            let txn = db.begin_write()?;
                            txn.open_table(T)?.insert("k", step)?;
                            Ok(txn.commit()?)
                        };
                        assert!(attempt().is_err(), "the power failed in the sync");
                        // Torn, the failed commit may still have reached the disk whole.
                        latest = step;
                    }
                }
                drop(db);
                db = open(&disk);
                let found = value(&db).unwrap_or(0);
                assert!(
                    durable <= found && found <= latest,
                    "seed {seed} step {step}: found {found}, durable {durable}, latest {latest}"
                );
                (durable, latest) = (found, found);
            }
        }
    }

    /// The same through the store: applied state committed without fsync is lost with the power,
    /// the durable commit before it is not.
    #[test]
    fn a_store_on_the_sim_disk_reopens_at_its_durable_state() {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.backend()).unwrap();
        store
            .append_and_apply(&Command::CreateVault(VaultSettings {
                name: vault(),
                retention_days: 7,
                purge_protection: false,
                created: 0,
            }))
            .unwrap()
            .1
            .unwrap();
        let lazy = crate::ReplicatedEntry {
            index: 2,
            commands: vec![put_command("lazy", "v1")],
        };
        store.apply_replicated(&[lazy], "applied", b"2").unwrap();
        let read = |store: &Store| {
            let view = store.read().unwrap();
            (
                view.last_applied().unwrap(),
                view.object(&vault(), ObjectKind::Secret, &name("lazy"))
                    .unwrap()
                    .is_some(),
            )
        };
        assert_eq!(read(&store), (2, true));
        disk.power_loss();
        drop(store);
        let store = Store::open_on(disk.backend()).unwrap();
        assert_eq!(read(&store), (1, false));
        assert!(store.read().unwrap().vault(&vault()).unwrap().is_some());
        assert_eq!(store.raft_meta_get("applied").unwrap(), None);
    }
}
