//! Throttling: Key Vault's service limits, per vault, as token buckets. Over a limit a request
//! is answered 429 `Throttled` with `Retry-After`, which the Azure SDKs honour (they retry any
//! request whose answer carries it, POSTs included), and a refused request costs nothing, as
//! Azure documents ("failed requests that return a 429 do not count towards the throttle
//! limits").
//!
//! Azure counts transactions per 10 seconds per vault in three classes that matter here:
//! secret creations, key creations (generate or import), and everything else. A bucket holds
//! up to the class's limit and refills at the limit per 10 s, so a burst up to the limit passes
//! at once and a steady rate up to limit/10 per second passes forever. Limits are per node: in
//! a cluster each node counts the requests it receives (documented in README).

use crate::error::ApiError;
use axum::http::Method;
use keystead_model::VaultName;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Azure's window: limits are "per 10 seconds".
const WINDOW: Duration = Duration::from_secs(10);

/// Transactions allowed per 10 seconds per vault, by class; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleLimits {
    pub secret_create: Option<u32>,
    pub key_create: Option<u32>,
    pub other: Option<u32>,
}

impl ThrottleLimits {
    /// Azure Key Vault's published limits for software-protected keys and secrets
    /// (`shared/reference/akv-api.md` §7): secret create 300, key create (RSA-2048 / EC) 20,
    /// all other transactions 4,000 per 10 s per vault.
    pub const AZURE: ThrottleLimits = ThrottleLimits {
        secret_create: Some(300),
        key_create: Some(20),
        other: Some(4_000),
    };

    /// Parses `azure`, or `class=N[,class=N...]` with classes `secret_create`, `key_create`
    /// and `other` (unnamed classes are unlimited).
    pub fn parse(spec: &str) -> Result<ThrottleLimits, String> {
        if spec.trim() == "azure" {
            return Ok(ThrottleLimits::AZURE);
        }
        let mut limits = ThrottleLimits::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (class, n) = part
                .split_once('=')
                .ok_or_else(|| format!("throttle limit {part:?} is not CLASS=N"))?;
            let n: u32 =
                n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("throttle limit {part:?}: N must be a positive number")
                })?;
            match class.trim() {
                "secret_create" => limits.secret_create = Some(n),
                "key_create" => limits.key_create = Some(n),
                "other" => limits.other = Some(n),
                other => {
                    return Err(format!(
                        "unknown throttle class {other:?} (secret_create, key_create, other)"
                    ))
                }
            }
        }
        Ok(limits)
    }

    fn limit(&self, class: Class) -> Option<u32> {
        match class {
            Class::SecretCreate => self.secret_create,
            Class::KeyCreate => self.key_create,
            Class::Other => self.other,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    SecretCreate,
    KeyCreate,
    Other,
}

impl Class {
    /// Which of Azure's classes a vault request (method and path segments) falls in.
    fn of(method: &Method, segs: &[&str]) -> Class {
        match (method, segs) {
            (&Method::PUT, ["secrets", _]) => Class::SecretCreate,
            (&Method::POST, ["keys", _, "create"]) | (&Method::PUT, ["keys", _]) => {
                Class::KeyCreate
            }
            _ => Class::Other,
        }
    }

    /// The class's label in `/metrics`.
    fn label(self) -> &'static str {
        match self {
            Class::SecretCreate => "secret_create",
            Class::KeyCreate => "key_create",
            Class::Other => "other",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Class::SecretCreate => "secret creations",
            Class::KeyCreate => "key creations",
            Class::Other => "transactions",
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Requests refused so far (for `/metrics`).
    refused: u64,
}

/// The buckets of every vault and class this node has seen.
pub struct Throttle {
    limits: ThrottleLimits,
    buckets: Mutex<HashMap<(VaultName, Class), Bucket>>,
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Throttle {
        Throttle {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Requests refused so far, by vault and class (`/metrics`), in a stable order.
    pub(crate) fn refusals(&self) -> Vec<(String, &'static str, u64)> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = buckets
            .iter()
            .map(|((vault, class), bucket)| (vault.to_string(), class.label(), bucket.refused))
            .collect();
        out.sort();
        out
    }

    /// Takes one transaction from `vault`'s bucket for this request's class, or refuses with
    /// the whole seconds until one is there.
    pub(crate) fn admit(
        &self,
        vault: &VaultName,
        method: &Method,
        segs: &[&str],
    ) -> Result<(), ApiError> {
        self.admit_at(vault, method, segs, Instant::now())
    }

    fn admit_at(
        &self,
        vault: &VaultName,
        method: &Method,
        segs: &[&str],
        now: Instant,
    ) -> Result<(), ApiError> {
        let class = Class::of(method, segs);
        let Some(limit) = self.limits.limit(class) else {
            return Ok(());
        };
        let capacity = f64::from(limit);
        let per_second = capacity / WINDOW.as_secs_f64();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry((vault.clone(), class)).or_insert(Bucket {
            tokens: capacity,
            at: now,
            refused: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        bucket.refused += 1;
        let retry_after_s = ((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64;
        Err(ApiError::Throttled {
            message: format!(
                "Too many {} for vault {vault}: the limit is {limit} per 10 seconds. Retry after {retry_after_s} s.",
                class.noun()
            ),
            retry_after_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(name: &str) -> VaultName {
        VaultName::parse(name).expect("a vault name")
    }

    #[test]
    fn classes_follow_azure() {
        assert_eq!(
            Class::of(&Method::PUT, &["secrets", "a"]),
            Class::SecretCreate
        );
        assert_eq!(
            Class::of(&Method::POST, &["keys", "a", "create"]),
            Class::KeyCreate
        );
        assert_eq!(Class::of(&Method::PUT, &["keys", "a"]), Class::KeyCreate);
        assert_eq!(Class::of(&Method::GET, &["secrets", "a"]), Class::Other);
        assert_eq!(
            Class::of(&Method::POST, &["keys", "a", "v", "sign"]),
            Class::Other
        );
        assert_eq!(
            Class::of(&Method::PATCH, &["secrets", "a", "v"]),
            Class::Other
        );
    }

    #[test]
    fn a_burst_up_to_the_limit_then_one_per_refill_and_refusals_cost_nothing() {
        let throttle = Throttle::new(ThrottleLimits::parse("other=5").expect("limits"));
        let (demo, other) = (vault("demo"), vault("other"));
        let get = |v: &VaultName, at| throttle.admit_at(v, &Method::GET, &["secrets", "a"], at);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(get(&demo, t0).is_ok());
        }
        // Empty: 5 per 10 s refills one every 2 s.
        match get(&demo, t0) {
            Err(ApiError::Throttled { retry_after_s, .. }) => assert_eq!(retry_after_s, 2),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Refused requests took nothing: one is there 2 s later, not later.
        for _ in 0..10 {
            assert!(get(&demo, t0 + Duration::from_millis(500)).is_err());
        }
        assert!(get(&demo, t0 + Duration::from_secs(2)).is_ok());
        assert!(get(&demo, t0 + Duration::from_secs(2)).is_err());
        // Per vault, and secret creations are unlimited here.
        assert!(get(&other, t0).is_ok());
        assert_eq!(
            throttle.refusals(),
            vec![
                ("demo".to_string(), "other", 12),
                ("other".to_string(), "other", 0)
            ]
        );
        assert!(throttle
            .admit_at(&demo, &Method::PUT, &["secrets", "a"], t0)
            .is_ok());
    }

    #[test]
    fn specs_parse_or_say_what_is_wrong() {
        assert_eq!(ThrottleLimits::parse("azure"), Ok(ThrottleLimits::AZURE));
        assert_eq!(
            ThrottleLimits::parse("secret_create=3, other=9"),
            Ok(ThrottleLimits {
                secret_create: Some(3),
                key_create: None,
                other: Some(9)
            })
        );
        assert!(ThrottleLimits::parse("other=0").is_err());
        assert!(ThrottleLimits::parse("reads=3").is_err());
        assert!(ThrottleLimits::parse("other").is_err());
    }
}
