//! Keystead as its own OAuth2 authority, shaped like Entra ID so azure-identity's
//! `ClientSecretCredential(authority=..., disable_instance_discovery=True)` works unchanged:
//! `/{tenant}/v2.0/.well-known/openid-configuration`, `/{tenant}/oauth2/v2.0/token`
//! (client_credentials) and `/{tenant}/discovery/v2.0/keys`.

use crate::auth::authority_url;
use crate::error::ApiError;
use crate::host::ClientHost;
use crate::request::{read_body, segments};
use crate::router::AppState;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use zeroize::Zeroizing;

pub(crate) async fn route(
    state: &AppState,
    host: &ClientHost,
    req: Request,
) -> Result<Response, ApiError> {
    let segs = segments(req.uri().path());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let (tenant, rest) = match segs.split_first() {
        Some((tenant, rest)) => (*tenant, rest),
        None => return Err(ApiError::NoRoute),
    };
    let known_route = matches!(
        (&method, rest),
        (
            &Method::GET,
            ["v2.0", ".well-known", "openid-configuration"]
        ) | (&Method::GET, [".well-known", "openid-configuration"])
            | (&Method::POST, ["oauth2", "v2.0", "token"])
            | (&Method::POST, ["oauth2", "token"])
            | (&Method::GET, ["discovery", "v2.0", "keys"])
            | (&Method::GET, ["discovery", "keys"])
    );
    if !known_route {
        return Err(ApiError::NoRoute);
    }
    if tenant != state.node.tenant_id() {
        return Err(ApiError::OAuth {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_tenant",
            description: format!(
                "AADSTS90002: Tenant not found. This Keystead deployment's tenant is {}.",
                state.node.tenant_id()
            ),
        });
    }
    let base = format!("{}/{}", authority_url(state, host), state.node.tenant_id());
    match rest {
        [.., "openid-configuration"] => Ok(Json(json!({
            "issuer": format!("{base}/v2.0"),
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "jwks_uri": format!("{base}/discovery/v2.0/keys"),
            "response_types_supported": ["token"],
            "grant_types_supported": ["client_credentials"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "tenant_region_scope": "keystead",
        }))
        .into_response()),
        [.., "keys"] => Ok(Json(state.node.jwks()).into_response()),
        _ => token(state, &format!("{base}/v2.0"), req).await,
    }
}

fn oauth_error(error: &'static str, description: &str) -> ApiError {
    ApiError::OAuth {
        status: StatusCode::BAD_REQUEST,
        error,
        description: description.to_string(),
    }
}

/// The client-credentials grant (client_secret_post). `claims` (CAE capabilities) and
/// `client_info` are accepted and ignored, as they are meaningless here.
async fn token(state: &AppState, issuer: &str, req: Request) -> Result<Response, ApiError> {
    let body = Zeroizing::new(read_body(req.into_body()).await?.to_vec());
    let form: HashMap<String, Zeroizing<String>> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
        .collect();
    let field = |name: &str| form.get(name).map(|v| v.as_str()).filter(|v| !v.is_empty());
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(oauth_error(
                "unsupported_grant_type",
                "AADSTS70003: Only the client_credentials grant is supported.",
            ))
        }
        None => {
            return Err(oauth_error(
                "invalid_request",
                "AADSTS900144: grant_type is required.",
            ))
        }
    }
    let client_id = field("client_id")
        .ok_or_else(|| oauth_error("invalid_request", "AADSTS900144: client_id is required."))?;
    let secret = field("client_secret").ok_or_else(|| {
        oauth_error(
            "invalid_client",
            "AADSTS7000216: client_secret is required.",
        )
    })?;
    let scope = field("scope")
        .ok_or_else(|| oauth_error("invalid_request", "AADSTS900144: scope is required."))?;
    let issued = state
        .node
        .issue_token(issuer, client_id, secret, scope)
        .await
        .map_err(|e| match e {
            keystead_core::CoreError::BadParameter(m) => oauth_error("invalid_scope", &m),
            // azure-identity reads OAuth2's own error shape from the token endpoint.
            keystead_core::CoreError::InvalidClient => ApiError::OAuth {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_client",
                description: "AADSTS7000215: Invalid client secret provided.".into(),
            },
            other => ApiError::Core(other),
        })?;
    Ok(Json(json!({
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "ext_expires_in": issued.expires_in,
        "access_token": issued.token,
    }))
    .into_response())
}
