//! Storage failures: I/O and corruption. Domain refusals are not errors here; they are
//! `ApplyError` values returned as the outcome of an applied command.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage: {0}")]
    Redb(Box<redb::Error>),
    #[error("a stored record could not be decoded: {0}")]
    Corrupt(String),
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError::Redb(Box::new(e.into()))
    }
}
