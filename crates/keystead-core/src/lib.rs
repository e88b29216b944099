//! Keystead's vault operations, independent of HTTP.
//!
//! [`Node`] is the handle the api crate holds. Writes build a [`keystead_model::Command`] —
//! resolving every non-deterministic choice (version id, timestamp, sealed value) first — and
//! hand it to a [`CommandLog`], which makes it durable and applies it. Reads go straight to the
//! local state machine. Plaintext values exist only here, in zeroizing buffers, between the
//! crypto crate and the api crate.

mod access_cache;
pub mod admin;
pub mod auth;
pub mod backup;
pub mod clock;
pub mod cluster;
pub mod error;
mod key_cache;
pub mod keys;
pub mod log;
mod node;
pub mod objects;
pub mod origin;
pub mod region;
pub mod retention;
pub mod rotation;
pub mod secrets;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod timer;
mod verified_tokens;

pub use auth::{AccessToken, Caller};
pub use clock::{Clock, SystemClock};
pub use error::CoreError;
pub use log::{CommandLog, LocalLog};
pub use node::{Bootstrap, Node, NodeConfig};
