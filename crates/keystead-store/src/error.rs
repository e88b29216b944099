//! Storage failures: I/O and corruption. Domain refusals are not errors here; they are
//! `ApplyError` values returned as the outcome of an applied command.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage: {0}")]
    Redb(Box<redb::Error>),
    #[error("a stored record could not be decoded: {0}")]
    Corrupt(String),
    /// A cluster node's Raft log file is gone while its state has applied entries: starting
    /// with an empty log would forget the node's vote, and it could vote twice in one term.
    #[error(
        "the Raft log {} is missing, but the state beside it has applied entries: restore the \
         file, or remove this node's data and join it to the cluster as a new member",
        .0.display()
    )]
    MissingRaftLog(std::path::PathBuf),
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError::Redb(Box::new(e.into()))
    }
}
