//! Time as the node sees it. Injectable so retention and expiry can be tested without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock, optionally shifted (tests and `--clock-offset` move time forward).
#[derive(Default)]
pub struct SystemClock {
    offset_seconds: AtomicI64,
}

impl SystemClock {
    pub fn advance(&self, seconds: i64) {
        self.offset_seconds.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        now + self.offset_seconds.load(Ordering::SeqCst)
    }
}
