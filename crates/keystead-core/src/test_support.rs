//! Test helpers (unit tests, and integration tests through the `test-support` feature): a
//! single-node `Node` in a temporary directory, with a vault `demo` (7-day retention) and a
//! principal holding Key Vault Administrator on it.

use crate::admin::NewPrincipal;
use crate::{Caller, Node, NodeConfig, SystemClock};
use keystead_crypto::Kek;
use std::sync::Arc;

pub struct TestNode {
    pub node: Node,
    pub clock: Arc<SystemClock>,
    pub principal: NewPrincipal,
    pub caller: Caller,
    /// The role assignment giving `caller` Key Vault Administrator on `demo`.
    pub assignment_id: String,
    /// The node's data directory, removed when this is dropped: move the other fields out
    /// (`let (node, clock) = (t.node, t.clock)`) and keep `t` itself for the test's length.
    pub dir: tempfile::TempDir,
}

pub async fn test_node() -> TestNode {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = Arc::new(SystemClock::default());
    let (node, _) = Node::open_single(
        NodeConfig::new(dir.path().to_path_buf()),
        Kek::generate().unwrap(),
        clock.clone(),
    )
    .await
    .unwrap();
    node.create_vault("demo", Some(7), false).await.unwrap();
    let principal = node.create_principal("tester").await.unwrap();
    let client_id = principal.principal.client_id.clone();
    let assignment = node
        .assign_role(&client_id, "Key Vault Administrator", "demo", None)
        .await
        .unwrap();
    TestNode {
        node,
        clock,
        principal,
        caller: Caller { client_id },
        assignment_id: assignment.id,
        dir,
    }
}
