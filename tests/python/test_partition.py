"""Partitions, black box: the leader of a 3-zone cluster is cut from both other nodes by fault
proxies on the node-to-node links (clients still reach every node). The isolated old leader must
commit nothing; the majority elects a leader and carries on; after healing the old leader steps
down and converges. Every operation's invoke/complete time and result is recorded and the
history is checked with a WGL linearizability checker: zero violations.
"""
import math
import random
import threading
import time

import pytest

from cluster_helpers import Cluster
from keystead_helpers import make_session, wait_until
from linearizability import Op, check

API = "7.6"
KEYS = ["k1", "k2"]


@pytest.fixture
def cluster(keystead_bin, tmp_path):
    c = Cluster(keystead_bin, tmp_path / "cluster", proxies=True)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


class Recorder:
    def __init__(self, cluster, principal):
        self.cluster = cluster
        self.tokens = {n.node_id: cluster.token(n, principal) for n in cluster.nodes}
        self.history = []        # (node_id, Op)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pause_writes = threading.Event()   # while set, clients only read

    def start(self, nodes) -> None:
        """One client thread per entry of `nodes`, each sending to that node."""
        self.threads = [threading.Thread(target=self.client, args=(i, node), daemon=True)
                        for i, node in enumerate(nodes)]
        for t in self.threads:
            t.start()

    def finish(self) -> list:
        """Stops the clients and returns the history: (node id, Op) pairs."""
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        return self.history

    def client(self, cid: int, node) -> None:
        rng = random.Random(cid)
        session = make_session(self.cluster.ca)
        headers = {"Authorization": f"Bearer {self.tokens[node.node_id]}"}
        base = node.vault_url("demo")
        for i in range(5_000):                   # bounded; the stop event ends it earlier
            if self.stop.is_set():
                return
            key = rng.choice(KEYS)
            call = time.monotonic()
            if rng.random() < 0.5 and not self.pause_writes.is_set():
                value = f"c{cid}-{i}"
                try:
                    r = session.put(f"{base}/secrets/{key}", params={"api-version": API},
                                    json={"value": value}, headers=headers, timeout=8)
                    ok = r.status_code == 200
                except Exception:
                    ok = False
                    session = make_session(self.cluster.ca)
                op = Op(cid, key, "w", value, call, time.monotonic() if ok else math.inf, ok)
            else:
                try:
                    r = session.get(f"{base}/secrets/{key}/", params={"api-version": API},
                                    headers=headers, timeout=8)
                    ok = r.status_code in (200, 404)
                    value = r.json().get("value") if r.status_code == 200 else None
                except Exception:
                    ok, value = False, None
                    session = make_session(self.cluster.ca)
                op = Op(cid, key, "r", value, call, time.monotonic(), ok)
            with self.lock:
                self.history.append((node.node_id, op))
            time.sleep(0.02)


@pytest.fixture
def cluster_without_lease(keystead_bin, tmp_path):
    c = Cluster(keystead_bin, tmp_path / "cluster", proxies=True,
                extra_cluster_config="lease_reads = false\n")
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def test_isolated_leader_commits_nothing_and_history_is_linearizable(cluster):
    isolate_the_leader_and_check(cluster, lease=True)


def test_with_lease_reads_off_every_read_takes_a_heartbeat_round_and_stays_linearizable(
        cluster_without_lease):
    """`[cluster] lease_reads = false`: the leader answers no read index from its lease, and
    the same isolation as above keeps the history linearizable."""
    isolate_the_leader_and_check(cluster_without_lease, lease=False)


def isolate_the_leader_and_check(cluster, lease: bool) -> None:
    principal = cluster.setup_vault()
    rec = Recorder(cluster, principal)
    rec.start(cluster.nodes + cluster.nodes[:2])
    try:
        time.sleep(2)
        old = cluster.leader()
        counts = cluster.status(old)["read_index"]
        if lease:
            # The leader has been answering reads from its lease: the checks below cover it.
            assert counts["lease"] > 0, counts
        else:
            assert counts["lease"] == 0 and counts["heartbeat_round"] > 0, counts
        majority = [n for n in cluster.nodes if n is not old]
        cluster.isolate(old)
        cut_at = time.monotonic()

        def majority_leader():
            try:
                leader = cluster.status(majority[0]).get("leader")
            except AssertionError:
                return None
            return leader if leader in {n.node_id for n in majority} else None
        new_leader = wait_until(majority_leader, timeout=15)
        assert new_leader, "the majority did not elect a leader"
        # Longer than the 5 s a quorum-less leader waits before answering 503, so the clients
        # of the isolated node send several writes into the partition.
        time.sleep(8)
        cluster.heal()
        healed_at = time.monotonic()

        def converged():
            status = cluster.status(old)
            return status.get("leader") == new_leader or status.get("leader") in {n.node_id for n in majority}
        assert wait_until(converged, timeout=20), f"old leader did not step down:\n{old.tail()}"
        time.sleep(2)
    finally:
        history = rec.finish()

    # The isolated side commits nothing and serves no linearizable read: no operation sent to
    # the old leader well after the cut succeeded before the partition healed.
    minority_ops = [op for node_id, op in history
                    if node_id == old.node_id and cut_at + 1.0 < op.call < healed_at]
    assert minority_ops, "nothing was sent to the isolated leader; the test proved nothing"
    minority_successes = [op for op in minority_ops if op.ok and op.ret < healed_at]
    assert not minority_successes, f"isolated leader answered: {minority_successes[:3]}"
    majority_acks = [op for node_id, op in history
                     if node_id != old.node_id and op.kind == "w" and op.ok and cut_at + 1.0 < op.call < healed_at]
    assert majority_acks, "the majority acknowledged no write during the partition"
    assert_linearizable(history)


def test_leader_cut_one_way_from_a_follower_hands_over_and_history_is_linearizable(cluster):
    """The leader can no longer reach one follower, which still reaches the leader. With no
    writes going on, that follower's log is as long as the leader's: it hears no heartbeat,
    stands for election and asks the leader for its vote; the leader, whose own lease is not
    renewed by heartbeats, grants it and steps down, while the other follower's lease refuses.
    This is the case where a leader answering reads from its lease could still be serving while
    another node already leads (`leader_lease.rs`). Writes then resume on the new leader and
    the whole history, reads on the old leader included, must stay linearizable."""
    principal = cluster.setup_vault()
    rec = Recorder(cluster, principal)
    rec.start(cluster.nodes * 2)
    try:
        time.sleep(2)
        old = cluster.leader()
        assert cluster.status(old)["read_index"]["lease"] > 0, cluster.status(old)
        rec.pause_writes.set()
        time.sleep(0.5)          # the last writes reach every node
        deaf = next(n for n in cluster.nodes if n is not old)
        cluster.cut_one_way(old, deaf)
        cut_at = time.monotonic()

        def deaf_leads():
            try:
                return cluster.status(deaf).get("leader") == deaf.node_id
            except AssertionError:
                return False
        assert wait_until(deaf_leads, timeout=15), f"the cut-off follower was not elected:\n{deaf.tail()}"
        rec.pause_writes.clear()
        time.sleep(4)
        cluster.heal()
        time.sleep(2)
    finally:
        history = rec.finish()

    reads_on_old = [op for node_id, op in history
                    if node_id == old.node_id and op.kind == "r" and op.call > cut_at]
    assert reads_on_old, "nothing was read on the old leader after the cut; the test proved nothing"
    writes_after = [op for _, op in history if op.kind == "w" and op.ok and op.call > cut_at]
    assert writes_after, "no write succeeded under the new leader; the test proved nothing"
    assert_linearizable(history)


def assert_linearizable(history) -> None:
    results = check([op for _, op in history])
    assert all(results.values()), f"linearizability violations on keys {[k for k, v in results.items() if not v]}"
