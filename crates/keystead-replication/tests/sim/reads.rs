//! The linearizability check of the readers' history against the writers'.
//!
//! Each secret is a register written by one client only, one version after the other, each
//! version with a higher sequence number (`workload::record`); a read answers the latest
//! version applied. For such a register a history is linearizable exactly when every answered
//! read `R` of a secret satisfies:
//!
//! 1. **Not stale:** it answers no older version than the newest one whose write was
//!    acknowledged before `R` was invoked (and answers some version if there is one).
//! 2. **Not from the future:** the version it answers was written by a write invoked before
//!    `R` completed, and never one a node refused or that provably reached no node.
//! 3. **Monotonic in real time:** a read invoked after `R` completed answers no older version
//!    than `R` did.
//!
//! (Writes of one register are sequential and their versions grow with time, so a write's
//! linearization point can always be placed between its invocation and its completion in
//! sequence order; these three then leave room for every read's point.) Times are simulated
//! and coarse (one tick), so "before" is strict: reads and writes within one tick are treated
//! as concurrent, which can only hide a violation, never invent one.

use crate::workload::{version_seq, Outcome, Read, Write};
use std::collections::BTreeMap;

/// Checks `reads` against `writes`; answers how many reads were checked.
pub fn check(writes: &[Write], reads: &[Read]) -> Result<usize, String> {
    let mut writes_of: BTreeMap<String, Vec<(u64, &Write)>> = BTreeMap::new();
    for write in writes {
        let seq = version_seq(&write.version.version)
            .ok_or_else(|| format!("write version {} has no sequence", write.version.version))?;
        writes_of
            .entry(write.name.key())
            .or_default()
            .push((seq, write));
    }
    let mut reads_of: BTreeMap<String, Vec<(Option<u64>, &Read)>> = BTreeMap::new();
    for read in reads {
        let name = read.name.key();
        let answered = match &read.version {
            None => None,
            Some(version) => {
                let seq = version_seq(version)
                    .ok_or_else(|| format!("read of {name} answered a stranger: {version}"))?;
                let write = writes_of
                    .get(&name)
                    .and_then(|ws| ws.iter().find(|(s, _)| *s == seq))
                    .map(|(_, w)| *w)
                    .ok_or_else(|| format!("read of {name} answered {version}, never written"))?;
                if write.invoked > read.completed {
                    return Err(format!(
                        "read of {name} ({:?}..{:?}) answered {version}, written only at {:?}",
                        read.invoked, read.completed, write.invoked
                    ));
                }
                if matches!(write.outcome, Outcome::Rejected | Outcome::Refused(_)) {
                    return Err(format!(
                        "read of {name} answered {version}, whose write was {:?}",
                        write.outcome
                    ));
                }
                Some(seq)
            }
        };
        let newest_acked = writes_of.get(&name).and_then(|ws| {
            ws.iter()
                .filter(|(_, w)| {
                    w.outcome == Outcome::Acked && w.completed.is_some_and(|c| c < read.invoked)
                })
                .max_by_key(|(seq, _)| *seq)
                .map(|(seq, w)| (*seq, *w))
        });
        if let Some((acked, write)) = newest_acked {
            if answered.is_none_or(|seq| seq < acked) {
                return Err(format!(
                    "stale read of {name} ({:?}..{:?}): answered {:?} ({:?}), but version {acked} \
                     was acknowledged by node {:?} at {:?}, before it began",
                    read.invoked,
                    read.completed,
                    read.version,
                    read.trace,
                    write.answered_by,
                    write.completed
                ));
            }
        }
        reads_of.entry(name).or_default().push((answered, read));
    }
    for (name, rs) in &reads_of {
        for (earlier_seq, earlier) in rs {
            for (later_seq, later) in rs {
                if earlier.completed < later.invoked && later_seq < earlier_seq {
                    return Err(format!(
                        "reads of {name} went back in time: {earlier_seq:?} at {:?}..{:?}, then \
                         {later_seq:?} at {:?}..{:?}",
                        earlier.invoked, earlier.completed, later.invoked, later.completed
                    ));
                }
            }
        }
    }
    Ok(reads.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::secret_name;
    use keystead_model::{Attributes, Ciphertext, Payload, VersionRecord};
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn version(seq: u64) -> String {
        format!("{:016x}{seq:016x}", 0)
    }

    fn write(seq: u64, outcome: Outcome, invoked: u64, completed: u64) -> Write {
        Write {
            name: secret_name(0, 0),
            version: VersionRecord {
                version: version(seq),
                attributes: Attributes {
                    enabled: true,
                    not_before: None,
                    expires: None,
                    created: 0,
                    updated: 0,
                },
                tags: Default::default(),
                content_type: None,
                payload: Payload::Secret {
                    value: Ciphertext(Vec::new()),
                },
            },
            outcome,
            invoked: ms(invoked),
            completed: Some(ms(completed)),
            answered_by: Some(1),
        }
    }

    fn read(seq: Option<u64>, invoked: u64, completed: u64) -> Read {
        Read {
            name: secret_name(0, 0),
            invoked: ms(invoked),
            completed: ms(completed),
            version: seq.map(version),
            trace: crate::net::ReadTrace {
                node: 1,
                term: 1,
                index: None,
                via_leader: None,
                lease: true,
                applied: None,
                store_applied: 0,
                versions: 0,
            },
        }
    }

    #[test]
    fn the_checker_finds_each_kind_of_violation() {
        let writes = [
            write(0, Outcome::Acked, 0, 10),
            write(1, Outcome::Unknown, 20, 30),
            write(2, Outcome::Acked, 40, 50),
            write(3, Outcome::Rejected, 60, 70),
        ];
        // Fine: concurrent with write 1 either answer goes; an unknown write may show.
        let fine = [
            read(Some(0), 21, 25),
            read(Some(1), 26, 29),
            read(Some(2), 45, 55),
            read(Some(2), 56, 58),
            read(None, 0, 5),
        ];
        assert_eq!(check(&writes, &fine), Ok(5));
        // Stale: write 2 was acknowledged at 50.
        assert!(check(&writes, &[read(Some(1), 51, 52)]).is_err());
        assert!(check(&writes, &[read(None, 11, 12)]).is_err());
        // From the future: write 2 was invoked at 40.
        assert!(check(&writes, &[read(Some(2), 31, 35)]).is_err());
        // A refused-to-start write, or a version nobody wrote.
        assert!(check(&writes, &[read(Some(3), 61, 80)]).is_err());
        assert!(check(&writes, &[read(Some(9), 61, 80)]).is_err());
        // Back in time: 1 was seen, then 0 by a read that began after.
        assert!(check(&writes, &[read(Some(1), 31, 33), read(Some(0), 34, 36)]).is_err());
    }
}
