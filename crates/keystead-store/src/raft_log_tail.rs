//! The newest entries of the Raft log, kept in memory beside the log file, so that a leader's
//! replication reads of what it has just appended need neither a read transaction nor a hop to
//! a blocking thread. On a lone write that hop sat between the leader's fsync and the
//! append-entries message, in the write's critical path.
//!
//! The tail mirrors the end of the log: [`crate::RaftLogFile`] adds entries only once their
//! commit is durable and removes them *before* it commits a truncation or purge, so the tail
//! never answers with an entry the log does not hold. It is always contiguous and, when not
//! empty, ends at the log's last entry (an append that does not follow it starts it over); a
//! range it does not fully hold is read from the file as before.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Most entries kept.
const MAX_ENTRIES: usize = 256;
/// Most bytes of entries kept.
const MAX_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Entries {
    /// `(index, bytes)`, consecutive indexes.
    rows: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
}

#[derive(Default)]
pub(crate) struct LogTail {
    entries: Mutex<Entries>,
}

impl LogTail {
    /// Entries `[start, end)`, if the tail holds all of them and they total at most
    /// `max_bytes`; otherwise `None` (read the file).
    pub(crate) fn range(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Option<Vec<(u64, Vec<u8>)>> {
        let entries = self.lock();
        let first = entries.rows.front()?.0;
        let last = entries.rows.back()?.0;
        if start >= end || start < first || end - 1 > last {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let take = usize::try_from(end - start).ok()?;
        let rows = entries.rows.iter().skip(skip).take(take);
        let mut total = 0usize;
        for (_, bytes) in rows.clone() {
            total = total.saturating_add(bytes.len());
            if total > max_bytes {
                return None;
            }
        }
        Some(rows.cloned().collect())
    }

    /// Records entries just made durable at the end of the log.
    pub(crate) fn appended(&self, rows: &[(u64, Vec<u8>)]) {
        let mut entries = self.lock();
        for (index, bytes) in rows {
            let follows = entries
                .rows
                .back()
                .is_none_or(|(last, _)| *last + 1 == *index);
            if !follows {
                *entries = Entries::default();
            }
            entries.bytes += bytes.len();
            entries.rows.push_back((*index, bytes.clone()));
        }
        while entries.rows.len() > MAX_ENTRIES || entries.bytes > MAX_BYTES {
            match entries.rows.pop_front() {
                Some((_, bytes)) => entries.bytes -= bytes.len(),
                None => break,
            }
        }
    }

    /// Forgets entries with index `>= from` (before a truncation commits).
    pub(crate) fn remove_from(&self, from: u64) {
        let mut entries = self.lock();
        while entries.rows.back().is_some_and(|(index, _)| *index >= from) {
            if let Some((_, bytes)) = entries.rows.pop_back() {
                entries.bytes -= bytes.len();
            }
        }
    }

    /// Forgets entries with index `<= upto` (before a purge commits).
    pub(crate) fn remove_upto(&self, upto: u64) {
        let mut entries = self.lock();
        while entries
            .rows
            .front()
            .is_some_and(|(index, _)| *index <= upto)
        {
            if let Some((_, bytes)) = entries.rows.pop_front() {
                entries.bytes -= bytes.len();
            }
        }
    }

    /// Forgets everything (before the log is emptied, or after a failed write).
    pub(crate) fn clear(&self) {
        *self.lock() = Entries::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A poisoned lock holds a consistent tail: each change above leaves it contiguous.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(indexes: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
        indexes.map(|i| (i, vec![i as u8; 10])).collect()
    }

    fn indexes(found: Option<Vec<(u64, Vec<u8>)>>) -> Option<Vec<u64>> {
        found.map(|rows| rows.into_iter().map(|(i, _)| i).collect())
    }

    #[test]
    fn answers_only_ranges_it_holds_whole() {
        let tail = LogTail::default();
        assert_eq!(tail.range(1, 2, usize::MAX), None);
        tail.appended(&rows(5..=9));
        assert_eq!(
            indexes(tail.range(5, 10, usize::MAX)),
            Some(vec![5, 6, 7, 8, 9])
        );
        assert_eq!(indexes(tail.range(7, 9, usize::MAX)), Some(vec![7, 8]));
        assert_eq!(tail.range(4, 6, usize::MAX), None, "starts before the tail");
        assert_eq!(tail.range(8, 11, usize::MAX), None, "ends after the log");
        assert_eq!(tail.range(6, 6, usize::MAX), None, "empty range");
        assert_eq!(tail.range(5, 10, 49), None, "more bytes than allowed");
        assert!(tail.range(5, 10, 50).is_some());
    }

    #[test]
    fn follows_truncation_purge_and_gaps() {
        let tail = LogTail::default();
        tail.appended(&rows(1..=10));
        tail.remove_from(8);
        assert_eq!(tail.range(7, 9, usize::MAX), None, "8 was truncated");
        tail.appended(&rows(8..=8));
        assert_eq!(indexes(tail.range(7, 9, usize::MAX)), Some(vec![7, 8]));
        tail.remove_upto(3);
        assert_eq!(tail.range(3, 5, usize::MAX), None, "3 was purged");
        assert_eq!(indexes(tail.range(4, 5, usize::MAX)), Some(vec![4]));
        // An append that does not follow the tail starts it over.
        tail.appended(&rows(20..=21));
        assert_eq!(tail.range(8, 9, usize::MAX), None);
        assert_eq!(indexes(tail.range(20, 22, usize::MAX)), Some(vec![20, 21]));
        tail.clear();
        assert_eq!(tail.range(20, 21, usize::MAX), None);
    }

    #[test]
    fn keeps_at_most_its_limits() {
        let tail = LogTail::default();
        tail.appended(&rows(1..=(MAX_ENTRIES as u64 + 10)));
        assert_eq!(tail.range(10, 11, usize::MAX), None);
        assert!(tail.range(11, 12, usize::MAX).is_some());
        let big = vec![(1000, vec![0u8; MAX_BYTES]), (1001, vec![0u8; 10])];
        tail.appended(&big);
        assert_eq!(
            tail.range(1000, 1001, usize::MAX),
            None,
            "over the byte limit"
        );
        assert!(tail.range(1001, 1002, usize::MAX).is_some());
    }
}
