//! Applying region commands, and the outbox every vault command is recorded in once a region
//! is configured. Deterministic like the rest of apply: the region state lives in the tables.
//!
//! Rules enforced here, so every replica of a region enforces them alike:
//! - a secondary's vault state changes only through `Replicate` / `InstallRegionSnapshot`
//!   (a vault command proposed on a secondary, or on a fenced primary, is refused);
//! - the stream is applied in `seq` order without gaps, each entry once;
//! - a role change names the epoch it expects, so two racing changes cannot both apply.

use crate::apply::{dispatch, Failure, Step};
use crate::raft::StateDump;
use crate::tables::{self, get, put};
use crate::{codec, Store, StoreError};
use keystead_model::{
    Applied, ApplyError, Command, DivergenceRecord, RegionRole, RegionState, StreamEntry,
};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

fn refuse(message: impl Into<String>) -> Failure {
    Failure::Refused(ApplyError::Region(message.into()))
}

pub(crate) fn state(txn: &WriteTransaction) -> Result<Option<RegionState>, StoreError> {
    get(&txn.open_table(tables::REGION)?, tables::REGION_STATE)
}

fn seq(txn: &WriteTransaction) -> Result<u64, StoreError> {
    Ok(get::<u64>(&txn.open_table(tables::REGION)?, tables::REGION_SEQ)?.unwrap_or(0))
}

/// Whether a vault command may apply here; returns the region state when one is configured
/// (the command must then be recorded in the outbox).
pub(crate) fn admit(txn: &WriteTransaction) -> Result<Option<RegionState>, Failure> {
    let Some(state) = state(txn)? else {
        return Ok(None);
    };
    if state.role == RegionRole::Secondary {
        return Err(refuse(format!(
            "region {} is a read-only secondary of {} (epoch {})",
            state.region, state.primary, state.epoch
        )));
    }
    if state.fenced {
        return Err(refuse(format!(
            "region {} is fenced for a switchover (epoch {})",
            state.region, state.epoch
        )));
    }
    Ok(Some(state))
}

/// Records an applied vault command as the next stream entry.
pub(crate) fn append_outbox(
    txn: &WriteTransaction,
    state: &RegionState,
    command: &Command,
) -> Result<(), StoreError> {
    let entry = StreamEntry {
        seq: seq(txn)? + 1,
        epoch: state.epoch,
        command: command.clone(),
    };
    write_entry(txn, state.outbox_keep, &entry)
}

fn write_entry(txn: &WriteTransaction, keep: u64, entry: &StreamEntry) -> Result<(), StoreError> {
    let mut outbox = txn.open_table(tables::OUTBOX)?;
    put(&mut outbox, &tables::outbox_key(entry.seq), entry)?;
    let keep = keep.max(1);
    // Trim everything older than the window (a lowered `outbox_keep` trims the excess too).
    if entry.seq > keep {
        let oldest_kept = tables::outbox_key(entry.seq - keep + 1);
        outbox.retain_in::<&str, _>(..oldest_kept.as_str(), |_, _| false)?;
    }
    put(
        &mut txn.open_table(tables::REGION)?,
        tables::REGION_SEQ,
        &entry.seq,
    )
}

/// Applies a region command.
pub(crate) fn apply(txn: &WriteTransaction, command: &Command) -> Step {
    match command {
        Command::SetRegion {
            expected_epoch,
            state: new,
        } => set_region(txn, *expected_epoch, new),
        Command::Replicate { entries } => replicate(txn, entries),
        Command::InstallRegionSnapshot { seq, epoch, state } => {
            install_snapshot(txn, *seq, *epoch, state)
        }
        Command::PutDivergence(record) => {
            let mut table = txn.open_table(tables::DIVERGENCE)?;
            put(&mut table, &record.id, record)?;
            Ok(Applied::Done)
        }
        other => Err(refuse(format!("{} is not a region command", other.label()))),
    }
}

fn set_region(txn: &WriteTransaction, expected: Option<u64>, new: &RegionState) -> Step {
    let current = state(txn)?;
    match (&current, expected) {
        (None, None) => {}
        (Some(_), None) => return Err(refuse("the region is already configured")),
        (None, Some(_)) => return Err(refuse("the region is not configured yet")),
        (Some(current), Some(expected)) if current.epoch != expected => {
            return Err(refuse(format!(
                "the region is at epoch {}, not {expected}",
                current.epoch
            )))
        }
        (Some(current), Some(_)) if new.epoch < current.epoch => {
            return Err(refuse("an epoch never goes back"))
        }
        _ => {}
    }
    put(
        &mut txn.open_table(tables::REGION)?,
        tables::REGION_STATE,
        new,
    )?;
    Ok(Applied::Done)
}

fn require_secondary(txn: &WriteTransaction) -> Result<RegionState, Failure> {
    match state(txn)? {
        Some(state) if state.role == RegionRole::Secondary => Ok(state),
        Some(state) => Err(refuse(format!(
            "region {} is the primary of epoch {}; it does not apply another region's stream",
            state.region, state.epoch
        ))),
        None => Err(refuse("the region is not configured")),
    }
}

fn replicate(txn: &WriteTransaction, entries: &[StreamEntry]) -> Step {
    let state = require_secondary(txn)?;
    let next = seq(txn)? + 1;
    // Decide every refusal before the first write.
    let fresh: Vec<&StreamEntry> = entries.iter().filter(|e| e.seq >= next).collect();
    for (offset, entry) in fresh.iter().enumerate() {
        if entry.seq != next + offset as u64 {
            return Err(refuse(format!(
                "replication gap: expected seq {}, got {}",
                next + offset as u64,
                entry.seq
            )));
        }
        if entry.command.is_region_local() {
            return Err(refuse("a region command cannot be replicated"));
        }
    }
    for entry in fresh {
        // The primary streams only commands it applied; the same state refuses nothing here.
        // Should it anyway (a bug), the refusal changed nothing and the stream goes on, like
        // on the primary.
        match dispatch(txn, entry.command.inner()) {
            Ok(_) | Err(Failure::Refused(_)) => {}
            Err(store) => return Err(store),
        }
        write_entry(txn, state.outbox_keep, entry)?;
    }
    Ok(Applied::Done)
}

fn install_snapshot(txn: &WriteTransaction, at: u64, _epoch: u64, data: &[u8]) -> Step {
    require_secondary(txn)?;
    let dump: StateDump = codec::decode(data)?;
    dump.write(txn, &tables::VAULT_TABLES)?;
    txn.open_table(tables::OUTBOX)?.retain(|_, _| false)?;
    put(
        &mut txn.open_table(tables::REGION)?,
        tables::REGION_SEQ,
        &at,
    )?;
    Ok(Applied::Done)
}

/// A cross-region snapshot: the vault state at one stream position.
pub struct RegionSnapshot {
    pub seq: u64,
    /// The epoch of the entry at `seq` (the current epoch if the outbox no longer has it).
    pub epoch: u64,
    pub state: Vec<u8>,
}

impl Store {
    /// The vault state and the stream position it corresponds to, from one consistent view.
    pub fn export_region_snapshot(&self) -> Result<RegionSnapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let region = txn.open_table(tables::REGION)?;
        let seq = get::<u64>(&region, tables::REGION_SEQ)?.unwrap_or(0);
        let current = get::<RegionState>(&region, tables::REGION_STATE)?;
        let outbox = txn.open_table(tables::OUTBOX)?;
        let epoch = match get::<StreamEntry>(&outbox, &tables::outbox_key(seq))? {
            Some(entry) => entry.epoch,
            None => current.map(|s| s.epoch).unwrap_or(0),
        };
        let dump = StateDump::read(&txn, &tables::VAULT_TABLES)?;
        Ok(RegionSnapshot {
            seq,
            epoch,
            state: codec::encode(&dump)?,
        })
    }
}

/// Region reads, for `ReadView`.
pub(crate) fn read_state(txn: &redb::ReadTransaction) -> Result<Option<RegionState>, StoreError> {
    get(&txn.open_table(tables::REGION)?, tables::REGION_STATE)
}

pub(crate) fn read_seq(txn: &redb::ReadTransaction) -> Result<u64, StoreError> {
    Ok(get::<u64>(&txn.open_table(tables::REGION)?, tables::REGION_SEQ)?.unwrap_or(0))
}

/// Outbox entries from `from` (inclusive), at most `limit`, and the oldest seq still held.
pub(crate) fn read_outbox(
    txn: &redb::ReadTransaction,
    from: u64,
    limit: usize,
) -> Result<(Vec<StreamEntry>, Option<u64>), StoreError> {
    let outbox = txn.open_table(tables::OUTBOX)?;
    let oldest = match outbox.first()? {
        Some((_, v)) => Some(codec::decode::<StreamEntry>(v.value())?.seq),
        None => None,
    };
    let mut entries = Vec::new();
    for row in outbox
        .range(tables::outbox_key(from).as_str()..)?
        .take(limit)
    {
        let (_, v) = row?;
        entries.push(codec::decode(v.value())?);
    }
    Ok((entries, oldest))
}

pub(crate) fn read_divergences(
    txn: &redb::ReadTransaction,
) -> Result<Vec<DivergenceRecord>, StoreError> {
    let table = txn.open_table(tables::DIVERGENCE)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, v) = row?;
        out.push(codec::decode(v.value())?);
    }
    Ok(out)
}
