"""Zone redundancy, black box: three `keystead serve` processes in three zones on loopback.

- kill -9 of the leader under a write load: no acknowledged write is lost, a new leader serves
  writes, the killed node rejoins and catches up;
- kill -9 of every node at once under load: the cluster comes back by itself with every
  acknowledged write;
- writes sent to followers are forwarded; reads on followers are linearizable.
"""
import threading
import time

import pytest

from cluster_helpers import Cluster, Node
from keystead_helpers import make_session, uniq, wait_until

API = "7.6"


@pytest.fixture
def cluster(keystead_bin, tmp_path):
    c = Cluster(keystead_bin, tmp_path / "cluster")
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def put_secret(cluster: Cluster, node: Node, token: str, name: str, value: str):
    session = make_session(cluster.ca)
    return session.put(f"{node.vault_url('demo')}/secrets/{name}", params={"api-version": API},
                       json={"value": value}, headers={"Authorization": f"Bearer {token}"}, timeout=15)


def get_version(cluster: Cluster, node: Node, token: str, name: str, version: str):
    session = make_session(cluster.ca)
    return session.get(f"{node.vault_url('demo')}/secrets/{name}/{version}", params={"api-version": API},
                       headers={"Authorization": f"Bearer {token}"}, timeout=15)


class Load:
    """Bounded writers spread over the live nodes, recording every acknowledged write."""

    def __init__(self, cluster: Cluster, principal: dict, threads: int = 3):
        self.cluster = cluster
        self.tokens = {n.node_id: cluster.token(n, principal) for n in cluster.nodes}
        self.acked = []          # (name, value, version, node_id, time)
        self.failures = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, worker: int) -> None:
        for i in range(100_000):          # bounded; the stop event ends it much earlier
            if self.stop.is_set():
                return
            nodes = [n for n in self.cluster.nodes if n.alive]
            if not nodes:
                time.sleep(0.05)
                continue
            node = nodes[(worker + i) % len(nodes)]
            name, value = f"w{worker}-{i}", uniq("v")
            try:
                r = put_secret(self.cluster, node, self.tokens[node.node_id], name, value)
            except Exception:
                r = None
            with self.lock:
                if r is not None and r.status_code == 200:
                    self.acked.append((name, value, r.json()["id"].rsplit("/", 1)[1], node.node_id, time.monotonic()))
                else:
                    self.failures += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def assert_all_readable(cluster: Cluster, node: Node, token: str, acked) -> None:
    missing = []
    for name, value, version, _, _ in acked:
        r = get_version(cluster, node, token, name, version)
        if r.status_code != 200 or r.json().get("value") != value:
            missing.append((name, version, r.status_code))
    assert not missing, f"{len(missing)} acknowledged writes lost on node {node.node_id}: {missing[:5]}"


def test_follower_forwards_writes_and_serves_linearizable_reads(cluster):
    principal = cluster.setup_vault()
    leader = cluster.leader()
    followers = [n for n in cluster.nodes if n is not leader]
    token_a = cluster.token(followers[0], principal)
    token_b = cluster.token(followers[1], principal)
    for i in range(20):
        r = put_secret(cluster, followers[0], token_a, "shared", f"value-{i}")
        assert r.status_code == 200, r.text
        version = r.json()["id"].rsplit("/", 1)[1]
        # Read-your-writes on another follower, immediately: the read barrier makes it wait.
        latest = make_session(cluster.ca).get(f"{followers[1].vault_url('demo')}/secrets/shared/",
                                              params={"api-version": API},
                                              headers={"Authorization": f"Bearer {token_b}"}, timeout=15)
        assert latest.status_code == 200
        assert latest.json()["value"] == f"value-{i}"
        assert latest.json()["id"].endswith(version)


def test_leader_kill9_loses_no_acknowledged_write(cluster):
    principal = cluster.setup_vault()
    with Load(cluster, principal) as load:
        time.sleep(2)
        victim = cluster.leader()
        victim.kill9()
        killed_at = time.monotonic()
        time.sleep(5)
    assert load.acked, "no write was acknowledged at all"
    after = [a for a in load.acked if a[4] > killed_at]
    assert after, f"no write acknowledged after the leader was killed ({load.failures} failures)"
    new_leader = cluster.leader()
    assert new_leader is not victim
    survivor_token = cluster.token(new_leader, principal)
    assert_all_readable(cluster, new_leader, survivor_token, load.acked)

    # The killed node rejoins by itself and catches up.
    victim.start()
    cluster.wait_ready(victim)
    target = cluster.status(new_leader)["last_log_index"]
    caught_up = wait_until(lambda: (cluster.status(victim).get("last_applied") or 0) >= target, timeout=30)
    assert caught_up, f"node {victim.node_id} did not catch up:\n{victim.tail()}"
    assert_all_readable(cluster, victim, cluster.token(victim, principal), load.acked)


def test_all_nodes_crash_and_come_back(cluster):
    principal = cluster.setup_vault()
    with Load(cluster, principal) as load:
        time.sleep(2.5)
        for node in cluster.nodes:
            node.kill9()
    assert load.acked
    for node in cluster.nodes:
        node.start()
    for node in cluster.nodes:
        cluster.wait_ready(node)
    leader = cluster.leader()
    assert_all_readable(cluster, leader, cluster.token(leader, principal), load.acked)
