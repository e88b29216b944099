//! Request plumbing shared by every route: path normalisation, the api-version rule, query
//! parameters, and reading a bounded JSON body into a typed request with a clean 400.

use crate::error::ApiError;
use axum::body::Body;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// Largest request body accepted: a secret value is at most 25 KB, so 1 MiB is generous.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest restore request: a backup of 500 versions of 25 KB secrets, base64url-encoded.
pub(crate) const MAX_RESTORE_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Collapses repeated slashes (some SDKs send `/keys/name//encrypt`) and splits the path into
/// segments, keeping a trailing empty segment: `/secrets/a/` → `["secrets", "a", ""]`.
pub(crate) fn segments(path: &str) -> Vec<String> {
    let mut collapsed = String::with_capacity(path.len());
    for ch in path.chars() {
        if !(ch == '/' && collapsed.ends_with('/')) {
            collapsed.push(ch);
        }
    }
    let trimmed = collapsed.strip_prefix('/').unwrap_or(&collapsed);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split('/')
        .map(|s| percent_decode(s).unwrap_or_else(|| s.to_string()))
        .collect()
}

fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let decoded: Vec<u8> =
        form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(decoded).ok()
}

/// Parsed query string (first value wins).
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            map.entry(k.to_ascii_lowercase())
                .or_insert_with(|| v.into_owned());
        }
        Query(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `maxresults`: 1..=25, default 25.
    pub fn max_results(&self) -> Result<usize, ApiError> {
        match self.get("maxresults") {
            None | Some("") => Ok(25),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=25).contains(&n) => Ok(n),
                _ => Err(ApiError::BadParameter(format!(
                    "Invalid maxresults value '{raw}': it must be an integer between 1 and 25."
                ))),
            },
        }
    }

    pub fn skip_token(&self) -> Option<&str> {
        self.get("$skiptoken").filter(|t| !t.is_empty())
    }
}

/// Accepts every published api-version (2016-10-01, 7.x, dated and preview versions) and any
/// newer date-shaped one, so a new SDK release keeps working; anything else is a 400.
pub(crate) fn check_api_version(query: &Query) -> Result<String, ApiError> {
    let Some(version) = query.get("api-version").filter(|v| !v.is_empty()) else {
        return Err(ApiError::BadParameter(
            "The 'api-version' query parameter is required. Consider using the latest supported version (2026-04-01).".into(),
        ));
    };
    if is_known_shape(version) {
        Ok(version.to_string())
    } else {
        Err(ApiError::BadParameter(format!(
            "The specified version ({}) is not recognized. Consider using the latest supported version (2026-04-01).",
            sanitize(version)
        )))
    }
}

fn is_known_shape(version: &str) -> bool {
    let (base, preview) = match version.split_once("-preview") {
        Some((base, rest)) => (base, Some(rest)),
        None => (version, None),
    };
    if let Some(rest) = preview {
        let ok = rest.is_empty()
            || rest
                .strip_prefix('.')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return false;
        }
    }
    let seven = base
        .strip_prefix("7.")
        .is_some_and(|minor| minor.len() == 1 && minor.bytes().all(|b| b.is_ascii_digit()));
    seven || is_date(base)
}

fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            let num = |s: &str| s.parse::<u32>().ok();
            matches!((num(y), num(m), num(d)), (Some(y), Some(m), Some(d))
                if (2015..=2999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d))
        }
        _ => false,
    }
}

/// Echoing caller input in messages: printable ASCII only, bounded length.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

/// Beyond this many bytes an oversized body is no longer read to the end (the connection is
/// then closed by the server instead of being kept alive).
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Reads a request body completely, keeping at most `limit` bytes. An oversized body is still
/// read to its end (up to [`MAX_DRAIN_BYTES`]) before the 400 is sent: answering while the
/// client is still sending makes many clients see a reset instead of the error, and leaves
/// the keep-alive connection unusable.
pub(crate) async fn collect_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut kept = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|_| ApiError::BadParameter("The request body could not be read.".into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total <= limit {
            kept.extend_from_slice(&data);
        } else if total > MAX_DRAIN_BYTES {
            break;
        }
    }
    if total > limit {
        zeroize::Zeroize::zeroize(&mut kept[..]);
        return Err(ApiError::BadParameter(format!(
            "The request body is larger than {limit} bytes."
        )));
    }
    Ok(kept.freeze())
}

/// Something a handler can get its body bytes from: the raw body (read here, bounded) or a
/// body the router already collected.
pub(crate) trait BodySource: Send {
    fn into_bytes(
        self,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<bytes::Bytes, ApiError>> + Send;
}

impl BodySource for Body {
    async fn into_bytes(self, limit: usize) -> Result<bytes::Bytes, ApiError> {
        collect_body(self, limit).await
    }
}

impl BodySource for bytes::Bytes {
    async fn into_bytes(self, limit: usize) -> Result<bytes::Bytes, ApiError> {
        if self.len() > limit {
            return Err(ApiError::BadParameter(format!(
                "The request body is larger than {limit} bytes."
            )));
        }
        Ok(self)
    }
}

/// The whole body, at most [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(body: impl BodySource) -> Result<bytes::Bytes, ApiError> {
    body.into_bytes(MAX_BODY_BYTES).await
}

/// The whole body, at most `limit` bytes.
pub(crate) async fn read_body_limited(
    body: impl BodySource,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    body.into_bytes(limit).await
}

/// Parses a JSON body into `T`. Unknown fields are ignored (newer SDKs add fields); missing
/// required fields, wrong types and malformed JSON are a 400 BadParameter.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadParameter(
            "The request body is missing.".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde's message can quote the offending input; keep position and category only.
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "The request body is not valid JSON"
            }
            _ => "The request body has a missing field or a field of the wrong type",
        };
        ApiError::BadParameter(format!(
            "{what} (line {}, column {}): {}",
            e.line(),
            e.column(),
            describe_data_error(&e)
        ))
    })
}

/// The part of a serde_json error that names fields and types, without echoing values.
fn describe_data_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix("missing field ") {
        return format!(
            "missing field {}",
            rest.split(" at line").next().unwrap_or(rest)
        );
    }
    if let Some(idx) = text.find("expected ") {
        let expected = text[idx..].split(" at line").next().unwrap_or("");
        return format!("invalid type, {expected}");
    }
    "malformed input".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        let ok =
            |v: &str| check_api_version(&Query::parse(Some(&format!("api-version={v}")))).is_ok();
        for v in [
            "7.0",
            "7.6",
            "7.6-preview.2",
            "2016-10-01",
            "2025-07-01",
            "2026-04-01",
            "2030-01-01",
            "2026-05-01-preview",
        ] {
            assert!(ok(v), "{v}");
        }
        for v in [
            "",
            "garbage",
            "8",
            "7.10",
            "2026-13-01",
            "2026-04-01-previewx",
            "1999-01-01",
        ] {
            assert!(!ok(v), "{v}");
        }
        assert!(check_api_version(&Query::parse(None)).is_err());
    }

    #[test]
    fn path_segments() {
        assert_eq!(segments("/secrets/a/"), vec!["secrets", "a", ""]);
        assert_eq!(segments("//secrets//a"), vec!["secrets", "a"]);
        assert_eq!(segments("/keys/k//encrypt"), vec!["keys", "k", "encrypt"]);
        assert!(segments("/").is_empty());
    }

    #[test]
    fn json_errors_do_not_echo_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            value: String,
        }
        let err = parse_json::<T>(br#"{"value": 12345678}"#).unwrap_err();
        assert!(!format!("{err:?}").contains("12345678"));
        assert!(parse_json::<T>(b"{").is_err());
        assert!(parse_json::<T>(b"").is_err());
        assert!(parse_json::<T>(br#"{"value":"x","unknown":1}"#).is_ok());
    }
}
