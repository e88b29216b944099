//! Who is asking: the HTTP layer runs each request inside [`scope`], and every command proposed
//! while handling it is attributed to that caller (`Command::Attributed`). The attribution is
//! what a region divergence record shows as "caller"; it is not used for authorization.
//!
//! A task-local rather than a parameter: attribution is cross-cutting bookkeeping, and
//! threading a caller through every operation's signature would only repeat it.

use std::future::Future;

tokio::task_local! {
    static CALLER: String;
}

/// Runs `f` with `caller` as the origin of the commands it proposes.
pub async fn scope<F: Future>(caller: String, f: F) -> F::Output {
    CALLER.scope(caller, f).await
}

/// The caller of the request being handled, if any.
pub fn current() -> Option<String> {
    CALLER.try_with(Clone::clone).ok()
}
