//! The one place where errors become HTTP: every failure is a [`ApiError`], rendered as Key
//! Vault's `{"error":{"code","message","innererror"}}` body with its status — or, for the token
//! endpoint, as an OAuth2 error body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keystead_core::keys::KeyRefusal;
use keystead_core::CoreError;
use keystead_model::{ApplyError, ObjectKind};
use serde_json::json;

#[derive(Debug)]
pub(crate) enum ApiError {
    /// A failure from the core.
    Core(CoreError),
    /// Malformed request: bad JSON, bad query, bad name, bad api-version.
    BadParameter(String),
    /// No route for this method and path.
    NoRoute,
    /// 401 with a challenge; the header value is the `WWW-Authenticate` challenge.
    Challenge { message: String, challenge: String },
    /// 429: over the vault's throttle limit (`throttle.rs`); `Retry-After` says when to retry.
    Throttled { message: String, retry_after_s: u64 },
    /// An OAuth2 token-endpoint error (`invalid_client`, `invalid_request`, ...).
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: String,
    },
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError::Core(e)
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        ApiError::Core(CoreError::Refused(e))
    }
}

fn not_found_code(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secret => "SecretNotFound",
        ObjectKind::Key => "KeyNotFound",
        ObjectKind::Certificate => "CertificateNotFound",
    }
}

fn disabled_code(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secret => "SecretDisabled",
        ObjectKind::Key => "KeyDisabled",
        ObjectKind::Certificate => "CertificateDisabled",
    }
}

/// Status, code, inner code and message for a Key Vault error body.
struct Rendered {
    status: StatusCode,
    code: &'static str,
    inner: Option<&'static str>,
    message: String,
}

fn render(error: &ApiError) -> Rendered {
    let plain = |status, code, message: String| Rendered {
        status,
        code,
        inner: None,
        message,
    };
    match error {
        ApiError::BadParameter(m) => plain(StatusCode::BAD_REQUEST, "BadParameter", m.clone()),
        ApiError::NoRoute => plain(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The requested operation or path is not supported.".into(),
        ),
        ApiError::Challenge { message, .. } => {
            plain(StatusCode::UNAUTHORIZED, "Unauthorized", message.clone())
        }
        ApiError::OAuth {
            status,
            error,
            description,
        } => plain(*status, error, description.clone()),
        ApiError::Throttled { message, .. } => {
            plain(StatusCode::TOO_MANY_REQUESTS, "Throttled", message.clone())
        }
        ApiError::Core(core) => render_core(core),
    }
}

fn render_core(error: &CoreError) -> Rendered {
    let plain = |status, code, message: String| Rendered {
        status,
        code,
        inner: None,
        message,
    };
    let with_inner = |status, code, inner, message: String| Rendered {
        status,
        code,
        inner: Some(inner),
        message,
    };
    match error {
        CoreError::BadParameter(m) => plain(StatusCode::BAD_REQUEST, "BadParameter", m.clone()),
        CoreError::BadBackup => plain(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The backup blob is malformed, was tampered with, or was not produced by this deployment's key hierarchy.".into(),
        ),
        CoreError::Unauthorized(m) => plain(StatusCode::UNAUTHORIZED, "Unauthorized", m.clone()),
        CoreError::InvalidClient => plain(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.".into(),
        ),
        CoreError::AdminUnauthorized => plain(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "A valid admin token is required.".into(),
        ),
        CoreError::Forbidden { caller, action, vault } => with_inner(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "ForbiddenByRbac",
            format!(
                "Caller is not authorized to perform action on resource.\r\nIf role assignments were recently changed, please wait several minutes for role assignments to become effective.\r\nCaller: appid={caller}\r\nAction: '{}'\r\nResource: 'vault {vault}'\r\nAssignment: (not found)\r\nVault: {vault}",
                action.0
            ),
        ),
        CoreError::Disabled { kind, .. } => with_inner(
            StatusCode::FORBIDDEN,
            "Forbidden",
            disabled_code(*kind),
            format!("Operation get is not allowed on a disabled {}.", kind.noun().to_lowercase()),
        ),
        CoreError::VaultNotFound(vault) => plain(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("Vault {vault} was not found on this Keystead deployment."),
        ),
        CoreError::Refused(refusal) => render_refusal(refusal),
        CoreError::ReadOnly { region, detail } => {
            read_only(&format!("Region {region} is read-only: {detail}"))
        }
        CoreError::Unavailable(m) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("The service is temporarily unavailable: {m}"),
        ),
        CoreError::KeyRefused { operation, reason } => {
            let (inner, message) = match reason {
                KeyRefusal::Disabled => (
                    "KeyDisabled",
                    format!("Operation {operation} is not allowed on a disabled key."),
                ),
                KeyRefusal::Expired => (
                    "KeyExpired",
                    format!("Operation {operation} is not allowed on an expired key."),
                ),
                KeyRefusal::NotYetValid => (
                    "KeyNotYetValid",
                    format!("Operation {operation} is not allowed on a key that is not yet valid (nbf)."),
                ),
                KeyRefusal::OperationNotPermitted | _ => (
                    "KeyOperationForbidden",
                    format!("Operation {operation} is not permitted by this key's key_ops."),
                ),
            };
            with_inner(StatusCode::FORBIDDEN, "Forbidden", inner, message)
        }
        // Internal failures, and any variant added later without a mapping: a server fault.
        _ => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The server encountered an internal error.".into(),
        ),
    }
}

/// A write refused because this region is read-only (a secondary whose primary is out of
/// reach, a fenced primary, a primary without its lease). 403, which the Azure SDKs do not
/// retry: the condition lasts until a failover or the primary's return, far longer than a
/// retry policy's budget, and a fast clear error lets the caller fail over its own traffic.
fn read_only(message: &str) -> Rendered {
    Rendered {
        status: StatusCode::FORBIDDEN,
        code: "ReadOnlyMode",
        inner: None,
        message: format!("The vault is in read-only mode. {message}"),
    }
}

fn render_refusal(refusal: &ApplyError) -> Rendered {
    let plain = |status, code, message: String| Rendered {
        status,
        code,
        inner: None,
        message,
    };
    match refusal {
        ApplyError::ObjectNotFound { kind, name } => plain(
            StatusCode::NOT_FOUND,
            not_found_code(*kind),
            format!(
                "A {} with (name/id) {name} was not found in this key vault. If you recently deleted this {} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
                kind.noun().to_lowercase(),
                kind.noun().to_lowercase()
            ),
        ),
        ApplyError::VersionNotFound { kind, name, version } => plain(
            StatusCode::NOT_FOUND,
            not_found_code(*kind),
            format!(
                "A {} with (name/id) {name}/{version} was not found in this key vault. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
                kind.noun().to_lowercase()
            ),
        ),
        ApplyError::DeletedObjectNotFound { kind, name } => plain(
            StatusCode::NOT_FOUND,
            not_found_code(*kind),
            format!("Deleted {} not found: {name}", kind.noun()),
        ),
        ApplyError::DeletedButRecoverable { kind, name } => Rendered {
            status: StatusCode::CONFLICT,
            code: "Conflict",
            inner: Some("ObjectIsDeletedButRecoverable"),
            message: format!(
                "{} {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the {} can only be recovered or purged.",
                kind.noun(),
                kind.noun().to_lowercase()
            ),
        },
        ApplyError::ObjectExists { kind, name } => plain(
            StatusCode::CONFLICT,
            "Conflict",
            format!("{} {name} already exists in this vault.", kind.noun()),
        ),
        ApplyError::VersionExists { kind, name, version } => plain(
            StatusCode::CONFLICT,
            "Conflict",
            format!("{} {name} version {version} already exists.", kind.noun()),
        ),
        ApplyError::PurgeProtected { .. } => plain(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.".into(),
        ),
        ApplyError::VaultNotFound(v) => plain(StatusCode::NOT_FOUND, "VaultNotFound", format!("Vault {v} was not found.")),
        ApplyError::VaultExists(v) => plain(StatusCode::CONFLICT, "Conflict", format!("Vault {v} already exists.")),
        ApplyError::VaultProtected(v) => plain(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Vault {v} has purge protection and still holds objects; it cannot be deleted."),
        ),
        ApplyError::PrincipalNotFound(p) => plain(StatusCode::NOT_FOUND, "NotFound", format!("Principal {p} was not found.")),
        ApplyError::PrincipalExists(p) => plain(StatusCode::CONFLICT, "Conflict", format!("Principal {p} already exists.")),
        ApplyError::RoleAssignmentNotFound(r) => plain(StatusCode::NOT_FOUND, "NotFound", format!("Role assignment {r} was not found.")),
        ApplyError::RoleAssignmentExists(r) => plain(StatusCode::CONFLICT, "Conflict", format!("Role assignment {r} already exists.")),
        ApplyError::AlreadyInitialized => plain(StatusCode::CONFLICT, "Conflict", "The deployment is already initialized.".into()),
        ApplyError::Invalid(m) => plain(StatusCode::BAD_REQUEST, "BadParameter", m.clone()),
        ApplyError::Region(m) => read_only(m),
        _ => plain(StatusCode::BAD_REQUEST, "BadParameter", refusal.to_string()),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Core(CoreError::Internal(detail)) = &self {
            // Internal details (never secret material) go to the log, not to the caller.
            tracing::error!(%detail, "internal error");
        }
        // Token-endpoint failures use OAuth2's own body shape, which azure-identity parses.
        if let ApiError::OAuth {
            status,
            error,
            description,
        } = &self
        {
            let body = json!({"error": error, "error_description": description});
            return (*status, axum::Json(body)).into_response();
        }
        let rendered = render(&self);
        let mut error = json!({"code": rendered.code, "message": rendered.message});
        if let Some(inner) = rendered.inner {
            error["innererror"] = json!({"code": inner});
        }
        let mut response = (rendered.status, axum::Json(json!({"error": error}))).into_response();
        if let ApiError::Core(CoreError::Unavailable(_)) = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::Throttled { retry_after_s, .. } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        if let ApiError::Challenge { challenge, .. } = &self {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}
