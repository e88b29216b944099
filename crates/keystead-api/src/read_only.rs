//! Which requests a secondary region serves itself. Azure's read-only mode lists exactly:
//! list/get secrets, list/get keys (properties), list/get certificates, encrypt, decrypt,
//! wrap, unwrap, verify, sign, backup (and vault properties, an admin read here). Those are
//! served from the secondary's replicated state whether or not the primary is reachable.
//! Every write is forwarded to the primary while it is reachable and refused otherwise; the
//! other reads (deleted objects, rotation policies, `/rng`) are served while the primary is
//! reachable and refused like writes when it is not.

use axum::http::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// In the seeds' read-only set.
    ReadOnlySet,
    /// A read outside that set.
    OtherRead,
    Write,
}

const CRYPTO_OPS: [&str; 6] = [
    "encrypt",
    "decrypt",
    "wrapkey",
    "unwrapkey",
    "sign",
    "verify",
];

pub(crate) fn classify(method: &Method, segs: &[&str]) -> Access {
    let collection = segs.first().copied();
    let live = matches!(collection, Some("secrets" | "keys" | "certificates"));
    if *method == Method::GET {
        let rotation_policy = segs.last() == Some(&"rotationpolicy");
        return if live && !rotation_policy {
            Access::ReadOnlySet
        } else {
            Access::OtherRead
        };
    }
    if *method == Method::POST {
        let last = segs.last().copied().unwrap_or_default();
        if live && segs.len() == 3 && last == "backup" {
            return Access::ReadOnlySet;
        }
        if collection == Some("keys") && segs.len() >= 3 && CRYPTO_OPS.contains(&last) {
            return Access::ReadOnlySet;
        }
        if collection == Some("rng") {
            return Access::OtherRead;
        }
    }
    Access::Write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_read_only_set() {
        let get = |p: &[&str]| classify(&Method::GET, p);
        let post = |p: &[&str]| classify(&Method::POST, p);
        assert_eq!(get(&["secrets"]), Access::ReadOnlySet);
        assert_eq!(get(&["secrets", "a"]), Access::ReadOnlySet);
        assert_eq!(get(&["secrets", "a", "versions"]), Access::ReadOnlySet);
        assert_eq!(get(&["keys", "k", "v1"]), Access::ReadOnlySet);
        assert_eq!(post(&["keys", "k", "v1", "sign"]), Access::ReadOnlySet);
        assert_eq!(post(&["keys", "k", "", "decrypt"]), Access::ReadOnlySet);
        assert_eq!(post(&["keys", "k", "wrapkey"]), Access::ReadOnlySet);
        assert_eq!(post(&["secrets", "a", "backup"]), Access::ReadOnlySet);
        assert_eq!(post(&["keys", "k", "backup"]), Access::ReadOnlySet);
        assert_eq!(get(&["deletedsecrets"]), Access::OtherRead);
        assert_eq!(get(&["keys", "k", "rotationpolicy"]), Access::OtherRead);
        assert_eq!(post(&["rng"]), Access::OtherRead);
        assert_eq!(classify(&Method::PUT, &["secrets", "a"]), Access::Write);
        assert_eq!(post(&["keys", "k", "create"]), Access::Write);
        assert_eq!(post(&["keys", "k", "rotate"]), Access::Write);
        assert_eq!(post(&["secrets", "restore"]), Access::Write);
        assert_eq!(classify(&Method::DELETE, &["secrets", "a"]), Access::Write);
        assert_eq!(classify(&Method::PATCH, &["keys", "k", "v"]), Access::Write);
    }
}
