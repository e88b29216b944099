//! The clients' workload: a bounded number of secret writes, each a new version with a value no
//! other write has, sent to a node over the simulated network and retried a bounded number of
//! times (the same command each time: applying a version twice answers as the first time did);
//! and readers asking for the latest version of those secrets until a deadline. Every write's
//! fate and every answered read is recorded, with simulated invoke and completion times, for
//! the checks at the end (`reads.rs` checks the reads).

use crate::net::{call, CallError, ReadAnswer, ReadTrace, Request, WriteAnswer};
use crate::node::{host, NODES};
use keystead_model::{
    Attributes, Ciphertext, Command, ObjectKind, ObjectName, Payload, VaultName, VaultSettings,
    VersionRecord,
};
use keystead_replication::types::Response;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Attempts per write before the client gives up (the outcome may then be unknown).
const ATTEMPTS: usize = 8;
/// How long one attempt waits for its answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

pub fn vault() -> VaultName {
    VaultName::parse("sim").expect("a valid vault name")
}

/// What became of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, no answer yet.
    Pending,
    /// A node answered that it committed and applied it: it must never be lost.
    Acked,
    /// No attempt ever reached a node: it must never appear. (A "not leader" answer is no such
    /// proof: openraft also gives it when the entry was appended and then truncated from that
    /// node's log, and a copy on another node may still be committed later.)
    Rejected,
    /// Some attempt may have been appended: it may or may not appear.
    Unknown,
    /// Applying it was refused: never expected of these writes.
    Refused(String),
}

#[derive(Clone, Debug)]
pub struct Write {
    pub name: ObjectName,
    pub version: VersionRecord,
    pub outcome: Outcome,
    /// Simulated time the first attempt was made, and the outcome known.
    pub invoked: Duration,
    pub completed: Option<Duration>,
    /// The node that answered with the outcome.
    pub answered_by: Option<u64>,
}

/// Names written: each writer's own secrets (so one secret's versions come from one client,
/// one after the other).
pub const SECRETS_PER_CLIENT: u64 = 8;

pub fn secret_name(client: u64, slot: u64) -> ObjectName {
    ObjectName::parse(&format!("c{client}-s{slot}")).expect("a valid name")
}

/// The sequence number of a write's version id (see `record`).
pub fn version_seq(version: &str) -> Option<u64> {
    version
        .get(16..)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
}

/// An answered read: what the latest version was, between `invoked` and `completed`.
#[derive(Clone, Debug)]
pub struct Read {
    pub name: ObjectName,
    pub invoked: Duration,
    pub completed: Duration,
    pub version: Option<String>,
    pub trace: ReadTrace,
}

/// Every answered read, shared with the driver.
#[derive(Clone, Default)]
pub struct Reads(Arc<Mutex<Vec<Read>>>);

impl Reads {
    pub fn lock(&self) -> MutexGuard<'_, Vec<Read>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every write any client started, shared with the driver.
#[derive(Clone, Default)]
pub struct Writes(Arc<Mutex<Vec<Write>>>);

impl Writes {
    pub fn lock(&self) -> MutexGuard<'_, Vec<Write>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writes by `(name, version id)`.
    pub fn by_key(&self) -> BTreeMap<(String, String), Write> {
        self.lock()
            .iter()
            .map(|w| ((w.name.key(), w.version.version.clone()), w.clone()))
            .collect()
    }

    fn set(&self, index: usize, (outcome, answered_by): (Outcome, Option<u64>)) {
        if let Some(write) = self.lock().get_mut(index) {
            write.outcome = outcome;
            write.completed = Some(turmoil::elapsed());
            write.answered_by = answered_by;
        }
    }
}

/// One client: creates the vault (if nobody has yet), then writes until `max` writes or until
/// `until` (simulated time since the start), pausing a little between writes.
pub async fn run(
    client: u64,
    seed: u64,
    writes: Writes,
    max: u64,
    until: Duration,
) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(seed ^ (client << 48));
    let mut leader = None;
    let create = Command::CreateVault(VaultSettings {
        name: vault(),
        retention_days: 7,
        purge_protection: false,
        created: 0,
    });
    // Until the vault exists (created by this client or another), there is nothing to write to.
    let mut vault_ready = false;
    for _ in 0..50 {
        match propose(client, &create, &mut leader, &mut rng).await.0 {
            Outcome::Acked => vault_ready = true,
            Outcome::Refused(why) if why.contains("exists") => vault_ready = true,
            _ => {}
        }
        if vault_ready {
            break;
        }
    }
    if !vault_ready {
        return Err("the vault could not be created".into());
    }
    for seq in 0..max {
        if turmoil::elapsed() >= until {
            break;
        }
        let name = secret_name(client, seq % SECRETS_PER_CLIENT);
        let version = record(client, seq);
        let command = Command::PutVersion {
            vault: vault(),
            kind: ObjectKind::Secret,
            name: name.clone(),
            version: version.clone(),
        };
        let index = {
            let mut all = writes.lock();
            all.push(Write {
                name,
                version,
                outcome: Outcome::Pending,
                invoked: turmoil::elapsed(),
                completed: None,
                answered_by: None,
            });
            all.len() - 1
        };
        let outcome = propose(client, &command, &mut leader, &mut rng).await;
        writes.set(index, outcome);
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..80))).await;
    }
    Ok(())
}

/// A version whose id and sealed bytes no other write has (apply never decrypts, so any bytes
/// stand in for ciphertext).
fn record(client: u64, seq: u64) -> VersionRecord {
    VersionRecord {
        version: format!("{client:016x}{seq:016x}"),
        attributes: Attributes {
            enabled: true,
            not_before: None,
            expires: None,
            created: seq as i64,
            updated: seq as i64,
        },
        tags: BTreeMap::new(),
        content_type: None,
        payload: Payload::Secret {
            value: Ciphertext(format!("value {client}/{seq}").into_bytes()),
        },
    }
}

/// Sends `command` until a node answers with its outcome, for at most [`ATTEMPTS`] attempts.
/// Even-numbered clients send it to the leader (as far as they know it); odd-numbered ones to
/// any node, which forwards it to the leader as production's `RaftLog` does.
async fn propose(
    client: u64,
    command: &Command,
    leader: &mut Option<u64>,
    rng: &mut SmallRng,
) -> (Outcome, Option<u64>) {
    let forwarded = client % 2 == 1;
    let request = match forwarded {
        true => Request::Forward(command.clone()),
        false => Request::Write(command.clone()),
    };
    let mut maybe_appended = false;
    for _ in 0..ATTEMPTS {
        let target = match forwarded {
            true => rng.random_range(1..=NODES),
            false => leader.take().unwrap_or_else(|| rng.random_range(1..=NODES)),
        };
        match call::<WriteAnswer>(&host(target), &request, ATTEMPT_TIMEOUT).await {
            Ok(WriteAnswer::Done(response)) => {
                *leader = Some(target);
                let outcome = match *response {
                    Response(Some(Ok(_))) => Outcome::Acked,
                    Response(Some(Err(refusal))) => Outcome::Refused(refusal.to_string()),
                    Response(None) => Outcome::Refused("applied as a blank entry".into()),
                };
                return (outcome, Some(target));
            }
            Ok(WriteAnswer::NotLeader(hint)) => {
                maybe_appended = true;
                *leader = hint;
                if hint.is_some() {
                    continue;
                }
            }
            Ok(WriteAnswer::Failed(_)) | Err(CallError::Lost(_)) => maybe_appended = true,
            Err(CallError::NotSent(_)) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outcome = if maybe_appended {
        Outcome::Unknown
    } else {
        Outcome::Rejected
    };
    (outcome, None)
}

/// One reader: until `until`, reads the latest version of a random secret of the `writers`
/// clients, at the node that answered it last (else a random one; followers answer too, with
/// a read index from the leader), pausing a little between reads. Only answered reads are recorded: a refused or lost one says nothing.
pub async fn read(
    reader: u64,
    seed: u64,
    writers: u64,
    reads: Reads,
    until: Duration,
) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(seed ^ (reader << 40) ^ 0x7ead);
    let mut leader = None;
    while turmoil::elapsed() < until {
        let name = secret_name(
            rng.random_range(0..writers),
            rng.random_range(0..SECRETS_PER_CLIENT),
        );
        let target = leader.take().unwrap_or_else(|| rng.random_range(1..=NODES));
        let invoked = turmoil::elapsed();
        let request = Request::Read(name.clone());
        match call::<ReadAnswer>(&host(target), &request, ATTEMPT_TIMEOUT).await {
            Ok(ReadAnswer::Done(version, trace)) => {
                leader = Some(target);
                reads.lock().push(Read {
                    name,
                    invoked,
                    completed: turmoil::elapsed(),
                    version,
                    trace,
                });
            }
            Ok(ReadAnswer::Failed(_)) | Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..60))).await;
    }
    Ok(())
}
