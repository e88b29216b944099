//! The on-disk encoding of records and log entries: one format byte, then postcard.
//! Bumping `FORMAT` is how a future incompatible layout is recognised.

use crate::StoreError;
use serde::{de::DeserializeOwned, Serialize};

const FORMAT: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT];
    postcard::to_io(value, &mut out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((other, _)) => Err(StoreError::Corrupt(format!("unknown format byte {other}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}
