//! Bearer-token authentication for vault requests, and the 401 challenge the Azure SDKs parse:
//! `Bearer authorization="<authority>/<tenant>", resource="https://<base-domain>:<port>"`.
//! The resource is the parent domain of the vault's host (port included) so the SDKs'
//! challenge-resource verification passes without being turned off.

use crate::error::ApiError;
use crate::host::ClientHost;
use crate::router::AppState;
use axum::http::{header, HeaderMap};
use keystead_core::{Caller, CoreError};

/// The audience tokens for vaults on this host must carry (also the challenge's resource).
pub(crate) fn vault_resource(state: &AppState, host: &ClientHost) -> String {
    host.url_for(&state.config.base_domain)
}

/// The authority clients should get tokens from.
pub(crate) fn authority_url(state: &AppState, host: &ClientHost) -> String {
    match &state.config.authority_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => host.url_for("localhost"),
    }
}

fn challenge(state: &AppState, host: &ClientHost, message: &str) -> ApiError {
    ApiError::Challenge {
        message: message.to_string(),
        challenge: format!(
            "Bearer authorization=\"{}/{}\", resource=\"{}\"",
            authority_url(state, host),
            state.node.tenant_id(),
            vault_resource(state, host)
        ),
    }
}

/// Validates the request's bearer token. Runs before anything looks at the body or the path,
/// so an unauthenticated request always gets the challenge.
pub(crate) fn authenticate(
    state: &AppState,
    host: &ClientHost,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(challenge(
            state,
            host,
            "Request is missing a Bearer or PoP token.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(challenge(
            state,
            host,
            "The Authorization header is not a Bearer token.",
        ));
    };
    match state.node.authenticate(token, &vault_resource(state, host)) {
        Ok(caller) => Ok(caller),
        Err(CoreError::Unauthorized(message)) => Err(challenge(state, host, &message)),
        Err(other) => Err(other.into()),
    }
}

/// The admin API's credential: `Authorization: Bearer <admin token>`.
pub(crate) async fn authenticate_admin(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Core(CoreError::AdminUnauthorized))?;
    Ok(state.node.verify_admin(token).await?)
}
