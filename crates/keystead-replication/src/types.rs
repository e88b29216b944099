//! The openraft type configuration: the log carries `Proposal`s (one `keystead_model::Command`
//! or a batch of them) and applying an entry answers with the state machine's `ApplyResult` for
//! each command.

use keystead_model::{Applied, ApplyError, Command};
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::io::Cursor;

/// Where a node lives and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the node's cluster (node-to-node) listener.
    pub addr: String,
    /// `host:port` of the node's client (Key Vault API) listener.
    pub api_addr: String,
    pub zone: String,
    pub region: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (zone {}, region {})",
            self.addr, self.zone, self.region
        )
    }
}

/// What one Raft entry carries: one command, or several that writers proposed at the same time
/// (`write_batch.rs`): one log append, one fsync per node and one replication round for all of
/// them, applied in order. A lone command is written exactly as entries were before batches
/// existed (the bare command), so either form reads back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Proposal {
    One(Box<Command>),
    Batch(Vec<Command>),
}

/// Reads either form by its first token: a list is a batch, anything else one command. serde's
/// derived untagged decoding would first copy every entry into a generic tree and then try
/// each form against it; entries are decoded on every follower for every append.
impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Proposal, D::Error> {
        deserializer.deserialize_any(ProposalVisitor)
    }
}

struct ProposalVisitor;

impl<'de> Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a command or a list of commands")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Proposal, A::Error> {
        Vec::<Command>::deserialize(SeqAccessDeserializer::new(seq)).map(Proposal::Batch)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Proposal, A::Error> {
        let command = Command::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Proposal::One(Box::new(command)))
    }
}

impl Proposal {
    pub fn from_commands(mut commands: Vec<Command>) -> Proposal {
        match commands.len() {
            1 => Proposal::One(Box::new(commands.remove(0))),
            _ => Proposal::Batch(commands),
        }
    }

    pub fn into_commands(self) -> Vec<Command> {
        match self {
            Proposal::One(command) => vec![*command],
            Proposal::Batch(commands) => commands,
        }
    }
}

/// What applying one command produced (`None`: the command's entry was a blank or membership
/// entry, which no writer proposes). Also the answer to a write forwarded to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response(pub Option<Result<Applied, ApplyError>>);

/// What applying one entry produced: a [`Response`] per command, in order (none for blank and
/// membership entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryResponse(pub Vec<Response>);

openraft::declare_raft_types!(
    /// Keystead's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = EntryResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;
pub type StorageError = openraft::StorageError<u64>;

#[cfg(test)]
mod tests {
    use super::*;
    use keystead_model::{VaultName, VaultSettings};

    fn create(name: &str) -> Command {
        Command::CreateVault(VaultSettings {
            name: VaultName::parse(name).expect("a vault name"),
            retention_days: 7,
            purge_protection: false,
            created: 0,
        })
    }

    /// Entries written before batches existed hold a bare command: a lone command is still
    /// written that way, and both forms read back.
    #[test]
    fn a_lone_command_is_stored_as_before_batches_and_both_forms_read_back() {
        let one = Proposal::from_commands(vec![create("alpha")]);
        let bare = serde_json::to_vec(&create("alpha")).expect("encode");
        assert_eq!(serde_json::to_vec(&one).expect("encode"), bare);
        let read: Proposal = serde_json::from_slice(&bare).expect("decode");
        assert_eq!(read.into_commands(), vec![create("alpha")]);

        let batch = Proposal::from_commands(vec![create("alpha"), create("bravo")]);
        let read: Proposal =
            serde_json::from_slice(&serde_json::to_vec(&batch).expect("encode")).expect("decode");
        assert_eq!(read.into_commands(), vec![create("alpha"), create("bravo")]);

        for bad in [
            &b"7"[..],
            b"\"CreateVault\"",
            b"{\"NoSuchCommand\":{}}",
            b"[{}]",
        ] {
            assert!(serde_json::from_slice::<Proposal>(bad).is_err());
        }
    }
}
