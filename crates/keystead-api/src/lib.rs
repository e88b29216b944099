//! The HTTP surface of Keystead: Azure Key Vault's data-plane API, Keystead's own OAuth2
//! authority, the admin API and health endpoints.
//!
//! This is the only crate that knows Key Vault's JSON shapes and error bodies. Requests are
//! routed by host name first (`<vault>.<base-domain>` is a vault; any other host is the
//! service: authority, admin, health), then by method and path segments.

mod admin;
mod auth;
mod authority;
mod error;
mod host;
mod keys;
mod lifecycle;
mod read_only;
mod request;
mod router;
mod secrets;
mod throttle;
mod wire;

pub use router::{app, ApiConfig, AppState};
pub use throttle::{Throttle, ThrottleLimits};
