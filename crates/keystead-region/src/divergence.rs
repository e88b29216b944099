//! Divergence records: writes a primary acknowledged in an epoch that was superseded (forced
//! or automatic failover) before they reached the promoted region. They are detected when the
//! former primary comes back as a secondary, kept, and shown to the operator, who re-applies
//! them onto the current primary (each outcome reported, conflicts included) or discards them.

use crate::log::RegionLog;
use crate::protocol::Topology;
use crate::region::{merge_history, Region};
use keystead_core::{CommandLog, CoreError};
use keystead_model::{
    Command, DivergenceRecord, DivergenceStatus, ObjectKind, ObjectName, RegionState, StreamEntry,
    VaultName,
};
use serde_json::{json, Value};
use std::sync::Arc;

/// Compares this region's last entry with the primary's history. `Some` when this region holds
/// entries past the point where their epoch ended: those never became the deployment's history.
pub(crate) fn detect(
    region: &Region,
    state: &RegionState,
    primary: &Topology,
) -> Result<Option<DivergenceRecord>, CoreError> {
    let read = region.store.read()?;
    let seq = read.region_seq()?;
    if seq == 0 {
        return Ok(None);
    }
    let (last, _) = read.region_outbox(seq, 1)?;
    // No outbox entry at our position: our state came from a snapshot of a primary.
    let Some(last) = last.into_iter().find(|e| e.seq == seq) else {
        return Ok(None);
    };
    let mut probe = state.clone();
    probe.history = merge_history(&state.history, &primary.history);
    let Some(end) = probe.epoch_end(last.epoch) else {
        return Ok(None);
    };
    if seq <= end {
        return Ok(None);
    }
    let id = format!("e{}-s{}-{}", last.epoch, end + 1, seq);
    if let Some(existing) = read.divergences()?.into_iter().find(|r| r.id == id) {
        return Ok(Some(existing));
    }
    let (entries, _) = read.region_outbox(end + 1, (seq - end) as usize)?;
    let superseded_by = probe
        .history
        .iter()
        .filter(|s| s.epoch > last.epoch)
        .map(|s| s.epoch)
        .min()
        .unwrap_or(state.epoch);
    Ok(Some(DivergenceRecord {
        id,
        epoch: last.epoch,
        superseded_by,
        entries,
        status: DivergenceStatus::Pending,
    }))
}

fn find(region: &Region, id: &str) -> Result<DivergenceRecord, CoreError> {
    region
        .store
        .read()?
        .divergences()?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| CoreError::BadParameter(format!("no divergence record {id}")))
}

fn status_label(status: &DivergenceStatus) -> &'static str {
    match status {
        DivergenceStatus::Pending => "pending",
        DivergenceStatus::Applied { .. } => "applied",
        DivergenceStatus::Discarded => "discarded",
    }
}

pub(crate) fn list(region: &Region) -> Result<Value, CoreError> {
    let records = region.store.read()?.divergences()?;
    Ok(json!(records
        .iter()
        .map(|r| json!({
            "id": r.id,
            "epoch": r.epoch,
            "superseded_by": r.superseded_by,
            "entries": r.entries.len(),
            "status": status_label(&r.status),
        }))
        .collect::<Vec<_>>()))
}

/// What an entry touched, for the operator: object, version, time and caller. Never values.
fn describe(entry: &StreamEntry) -> Value {
    let (caller, at) = match &entry.command {
        Command::Attributed { origin, .. } => (Some(origin.caller.clone()), Some(origin.at)),
        _ => (None, None),
    };
    let path = |vault: &VaultName, kind: ObjectKind, name: &ObjectName| {
        format!("{}/{}/{}", vault.as_str(), kind.collection(), name.as_str())
    };
    let key = ObjectKind::Key;
    let (object, version) = match entry.command.inner() {
        Command::PutVersion {
            vault,
            kind,
            name,
            version,
        } => (path(vault, *kind, name), Some(version.version.clone())),
        Command::RotateKey {
            vault,
            name,
            version,
            ..
        } => (path(vault, key, name), Some(version.version.clone())),
        Command::UpdateVersion {
            vault,
            kind,
            name,
            version,
            ..
        } => (path(vault, *kind, name), version.clone()),
        Command::UpdateKey {
            vault,
            name,
            version,
            ..
        } => (path(vault, key, name), version.clone()),
        Command::DeleteObject {
            vault, kind, name, ..
        }
        | Command::RecoverObject { vault, kind, name }
        | Command::PurgeObject { vault, kind, name }
        | Command::RestoreObject {
            vault, kind, name, ..
        } => (path(vault, *kind, name), None),
        Command::SetRotationPolicy { vault, name, .. } => {
            (format!("{}/rotationpolicy", path(vault, key, name)), None)
        }
        Command::CreateVault(settings) => (settings.name.to_string(), None),
        Command::DeleteVault { vault } | Command::EnablePurgeProtection { vault } => {
            (vault.to_string(), None)
        }
        _ => (String::new(), None),
    };
    json!({
        "seq": entry.seq,
        "epoch": entry.epoch,
        "operation": entry.command.label(),
        "object": object,
        "version": version,
        "caller": caller,
        "time": at,
    })
}

pub(crate) fn show(region: &Region, id: &str) -> Result<Value, CoreError> {
    let record = find(region, id)?;
    let outcomes = match &record.status {
        DivergenceStatus::Applied { outcomes } => Some(
            outcomes
                .iter()
                .map(|o| match o {
                    Ok(()) => json!({"ok": true}),
                    Err(conflict) => json!({"ok": false, "conflict": conflict}),
                })
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    Ok(json!({
        "id": record.id,
        "epoch": record.epoch,
        "superseded_by": record.superseded_by,
        "status": status_label(&record.status),
        "entries": record.entries.iter().map(describe).collect::<Vec<_>>(),
        "outcomes": outcomes,
    }))
}

/// Re-proposes every entry, in order, wherever writes go now (the primary), and records each
/// outcome. A conflict (the object changed meanwhile, a version exists) is reported, not fatal.
pub(crate) async fn apply(region: &Arc<Region>, id: &str) -> Result<Value, CoreError> {
    let mut record = find(region, id)?;
    if record.status != DivergenceStatus::Pending {
        return Err(CoreError::BadParameter(format!(
            "divergence record {id} is already {}",
            status_label(&record.status)
        )));
    }
    let log = RegionLog::new(region.clone());
    let mut outcomes = Vec::with_capacity(record.entries.len());
    for entry in &record.entries {
        let outcome = match log.propose(entry.command.clone()).await {
            Ok(_) => Ok(()),
            Err(CoreError::Refused(conflict)) => Err(conflict.to_string()),
            // Not a conflict: the primary could not take it now. Stop; nothing is recorded,
            // so the operator can simply run apply again (already applied entries then
            // report as conflicts or replays).
            Err(e) => return Err(e),
        };
        outcomes.push(outcome);
    }
    record.status = DivergenceStatus::Applied { outcomes };
    region.inner.propose(Command::PutDivergence(record)).await?;
    show(region, id)
}

pub(crate) async fn discard(region: &Region, id: &str) -> Result<Value, CoreError> {
    let mut record = find(region, id)?;
    record.status = DivergenceStatus::Discarded;
    region.inner.propose(Command::PutDivergence(record)).await?;
    show(region, id)
}
