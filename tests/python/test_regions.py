"""Regions, black box: two regions (`east` primary, `west` secondary) and a witness as real
processes on loopback, region links behind fault proxies the tests cut and heal.

- the secondary replicates from scratch and from a snapshot, and reports its lag;
- the read-only matrix at the secondary: the seeds' set works with the official SDKs whether or
  not the primary is reachable; writes are forwarded while it is and refused fast (403
  ReadOnlyMode, no SDK retries) while it is not; other reads likewise;
- planned switchover under write load loses no acknowledged write;
- forced failover keeps the old primary's unreplicated writes as a divergence record that the
  operator can list, show, apply (conflicts reported) or discard;
- with `failover = "promote"`: killing the primary region promotes the secondary; a primary cut
  from the secondary but not the witness is not replaced; a primary cut from both stops
  accepting writes before the secondary promotes (checked on the recorded history).
"""
import base64
import hashlib
import os
import threading
import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys.crypto import EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm

from geo_helpers import Geo
from keystead_helpers import make_session, uniq


@pytest.fixture
def geo(keystead_bin, tmp_path):
    g = Geo(keystead_bin, tmp_path / "geo", region_extra="outbox_keep = 30\n")
    try:
        g.start()
        yield g
    finally:
        g.stop()


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(geo: Geo, region: str) -> dict:
    return geo.region_view(geo.node(region))


# ------------------------------------------------------------------------ replication
def test_secondary_catches_up_from_scratch_and_from_a_snapshot(keystead_bin, tmp_path):
    geo = Geo(keystead_bin, tmp_path / "geo", witness=False, region_extra="outbox_keep = 30\n")
    east, west = geo.node("east"), geo.node("west")
    try:
        east.start()
        geo.wait_healthy(east)
        principal = geo.setup_vault()
        secrets = geo.secret_client(east, principal)
        written = {}
        for i in range(80):               # more than the outbox keeps: west needs a snapshot
            name = f"s{i}"
            written[name] = secrets.set_secret(name, f"value-{i}").properties.version
        west.start()
        geo.wait_healthy(west)
        head = status_of(geo, "east")["seq"]
        geo.wait_seq("west", head)
        assert "installing the primary's snapshot" in west.tail(200)
        west_secrets = geo.secret_client(west, principal)
        for name, version in written.items():
            got = west_secrets.get_secret(name)
            assert got.properties.version == version and got.value == f"value-{name[1:]}"
        # Steady replication from the stream after the snapshot.
        later = secrets.set_secret("after", "later")
        geo.wait_seq("west", status_of(geo, "east")["seq"])
        assert west_secrets.get_secret("after").properties.version == later.properties.version
        # Only ciphertext crossed: neither region's files hold a value in any encoding.
        from test_durability import scan
        marker = os.urandom(24).hex().encode()
        secrets.set_secret("plain-check", marker.decode())
        geo.wait_seq("west", status_of(geo, "east")["seq"])
        files = [p for region in ("east-1", "west-1") for p in (geo.base / region / "data").rglob("*")
                 if p.is_file() and p.name != "admin.json"]
        assert files and not scan(files, {"marker": marker})
        # A wiped secondary comes back from scratch.
        west.kill9()
        import shutil
        shutil.rmtree(west.config.parent / "west-1" / "data")
        west.start()
        geo.wait_healthy(west)
        geo.wait_seq("west", status_of(geo, "east")["seq"])
        assert geo.secret_client(west, principal).get_secret("s79").value == "value-79"
    finally:
        geo.stop()


@pytest.fixture
def distant_geo(keystead_bin, tmp_path):
    """Regions 20 ms apart each way (added by the fault proxies on every region link)."""
    g = Geo(keystead_bin, tmp_path / "geo", latency_ms=20)
    try:
        g.start()
        yield g
    finally:
        g.stop()


def test_lag_is_reported_and_bounded_under_a_steady_write_load(distant_geo):
    geo = distant_geo
    principal = geo.setup_vault()
    east, west = geo.node("east"), geo.node("west")
    token = geo.token(east, principal)
    west_token = geo.token(west, principal)
    lags = []
    for i in range(60):                   # bounded steady load, ~20 writes/s
        r = geo.request(east, token, "PUT", f"/secrets/lag{i}", json={"value": str(i)})
        assert r.status_code == 200, r.text
        if i % 10 == 0:
            view = status_of(geo, "west")
            lags.append((view["lag_entries"], view["lag_seconds"]))
            rr = geo.request(west, west_token, "GET", "/secrets")
            assert rr.status_code == 200
            assert "x-keystead-replication-lag-entries" in rr.headers
            assert "x-keystead-replication-lag-seconds" in rr.headers
            assert rr.headers["x-keystead-region"] == "west"
        time.sleep(0.05)
    geo.wait_seq("west", status_of(geo, "east")["seq"], timeout=10)
    assert all(entries < 60 and seconds < 10 for entries, seconds in lags), lags
    metrics = geo.request(west, west_token, "GET", "/")  # vault host: not metrics
    assert metrics.status_code in (404, 400)
    import requests
    from keystead_helpers import make_session
    m = make_session(geo.ca).get(f"https://localhost:{west.api_port}/metrics", timeout=10)
    assert 'keystead_replication_lag_entries{region="west"}' in m.text
    assert 'keystead_region_primary{region="west"} 0' in m.text


# ------------------------------------------------------------------- read-only matrix
def test_read_only_matrix_at_the_secondary(geo):
    principal = geo.setup_vault()
    east, west = geo.node("east"), geo.node("west")
    keys_east = geo.key_client(east, principal)
    rsa = keys_east.create_rsa_key(uniq("rk"), size=2048)
    secret = geo.secret_client(east, principal).set_secret(uniq("sec"), "s3cret")
    geo.wait_seq("west", status_of(geo, "east")["seq"])

    def read_only_set_works():
        secrets = geo.secret_client(west, principal)
        assert secrets.get_secret(secret.name).value == "s3cret"
        assert any(p.name == secret.name for p in secrets.list_properties_of_secrets())
        assert len(list(secrets.list_properties_of_secret_versions(secret.name))) == 1
        assert secrets.backup_secret(secret.name)
        keys = geo.key_client(west, principal)
        # Ids name the endpoint that answered; the version is the same.
        here = keys.get_key(rsa.name)
        assert here.properties.version == rsa.properties.version and here.key.n == rsa.key.n
        assert any(k.name == rsa.name for k in keys.list_properties_of_keys())
        assert keys.backup_key(rsa.name)
        crypto = geo.crypto_client(west, principal, here.id)
        digest = hashlib.sha256(b"geo").digest()
        sig = crypto.sign(SignatureAlgorithm.ps256, digest).signature
        assert crypto.verify(SignatureAlgorithm.ps256, digest, sig).is_valid
        ct = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"plain").ciphertext
        assert crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, ct).plaintext == b"plain"
        wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep, b"k" * 32).encrypted_key
        assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped).key == b"k" * 32

    # Primary reachable: everything in the set works, and writes are forwarded (one answer).
    read_only_set_works()
    forwarded = geo.secret_client(west, principal).set_secret("fwd", "via-west")
    assert geo.secret_client(east, principal).get_secret("fwd").properties.version == forwarded.properties.version
    assert geo.secret_client(west, principal).get_secret("fwd").value == "via-west"  # read your write
    geo.key_client(west, principal).create_ec_key(uniq("ek"))

    # Primary unreachable: the set still works; every other operation is refused at once.
    geo.cut("east", "west")
    wait_for(lambda: not status_of(geo, "west")["primary_reachable"], 10, "west to lose east")
    read_only_set_works()
    token = geo.token(west, principal)
    refused = [
        ("PUT", f"/secrets/{uniq('n')}", {"value": "x"}),
        ("PATCH", f"/secrets/{secret.name}", {"attributes": {"enabled": False}}),
        ("DELETE", f"/secrets/{secret.name}", None),
        ("POST", f"/keys/{uniq('k')}/create", {"kty": "EC", "crv": "P-256"}),
        ("POST", f"/keys/{rsa.name}/rotate", None),
        ("POST", "/secrets/restore", {"value": "AAAA"}),
        ("GET", "/deletedsecrets", None),
        ("GET", f"/keys/{rsa.name}/rotationpolicy", None),
        ("POST", "/rng", {"count": 8}),
    ]
    for method, path, body in refused:
        started = time.monotonic()
        r = geo.request(west, token, method, path, json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "ReadOnlyMode", r.text
        assert "east" in r.json()["error"]["message"]
        assert "failover policy read-only" in r.json()["error"]["message"]
        assert time.monotonic() - started < 2.0
    # The SDK does not retry it: one fast HttpResponseError with the code.
    started = time.monotonic()
    with pytest.raises(HttpResponseError) as err:
        geo.secret_client(west, principal).set_secret("nope", "x")
    assert err.value.error.code == "ReadOnlyMode"
    assert time.monotonic() - started < 3.0
    geo.heal()
    wait_for(lambda: status_of(geo, "west")["primary_reachable"], 10, "west to reach east again")
    assert geo.secret_client(west, principal).set_secret("after-heal", "ok").value == "ok"


# ------------------------------------------------------------------------ switchover
class Writers:
    """Bounded writers sending to both regions' endpoints, recording acknowledged writes."""

    def __init__(self, geo: Geo, principal: dict, threads: int = 2, pinned=None):
        """`pinned`: one region name per thread (each thread writes only there); default:
        every thread alternates over all nodes."""
        self.geo = geo
        self.pinned = pinned
        if pinned:
            threads = len(pinned)
        self.tokens = {n.name: geo.token(n, principal) for n in geo.nodes}
        self.acked = []           # (name, version, region endpoint, ack time, answering role)
        self.failures = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, worker: int) -> None:
        for i in range(5000):     # bounded; the stop event ends it much earlier
            if self.stop.is_set():
                return
            if self.pinned:
                node = self.geo.node(self.pinned[worker])
            else:
                node = self.geo.nodes[(worker + i) % len(self.geo.nodes)]
            if not node.alive:
                time.sleep(0.05)
                continue
            name = f"w{worker}-{i}"
            try:
                r = self.geo.request(node, self.tokens[node.name], "PUT", f"/secrets/{name}", json={"value": name})
            except Exception as e:  # noqa: BLE001 - connection errors are expected during faults
                with self.lock:
                    self.failures.append((time.monotonic(), node.name, repr(e)))
                continue
            with self.lock:
                if r.status_code == 200:
                    self.acked.append((name, r.json()["id"].rsplit("/", 1)[1], node.name, time.monotonic(),
                                       r.headers.get("x-keystead-region-role")))
                else:
                    self.failures.append((time.monotonic(), node.name, r.status_code))
            time.sleep(0.01)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def longest_gap(self, after: float) -> float:
        times = sorted(a[3] for a in self.acked if a[3] >= after)
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def assert_all_present(geo: Geo, node, principal: dict, acked) -> None:
    token = geo.token(node, principal)
    for name, version, *_ in acked:
        r = geo.request(node, token, "GET", f"/secrets/{name}/{version}")
        assert r.status_code == 200, (name, version, r.text)


def test_planned_switchover_under_write_load_loses_nothing(geo):
    principal = geo.setup_vault()
    with Writers(geo, principal) as writers:
        time.sleep(2)
        started = time.monotonic()
        result = geo.admin("region", "switchover", "--to", "west", via=geo.node("east"))
        assert result["epoch"] == 2 and result["region"] == "west"
        time.sleep(2)
    assert len(writers.acked) > 20
    west, east = geo.node("west"), geo.node("east")
    assert status_of(geo, "west")["role"] == "primary"
    wait_for(lambda: status_of(geo, "east")["role"] == "secondary", 10, "east to become secondary")
    assert_all_present(geo, west, principal, writers.acked)
    geo.wait_seq("east", status_of(geo, "west")["seq"])
    assert_all_present(geo, east, principal, writers.acked)
    gap = writers.longest_gap(started)
    print(f"switchover: {result.get('switchover_ms')} ms; longest gap between acknowledged writes {gap:.2f}s")
    assert gap < 10
    # And back again: failback by switchover.
    result = geo.admin("region", "switchover", "--to", "east", via=west)
    assert result["epoch"] == 3
    assert status_of(geo, "east")["role"] == "primary"


# -------------------------------------------------------------- forced failover, divergence
def test_forced_failover_keeps_unreplicated_writes_as_a_divergence_record(keystead_bin, tmp_path):
    geo = Geo(keystead_bin, tmp_path / "geo", witness=False, failover="manual")
    try:
        geo.start()
        principal = geo.setup_vault()
        east, west = geo.node("east"), geo.node("west")
        secrets_east = geo.secret_client(east, principal)
        secrets_east.set_secret("shared", "v1")
        secrets_east.set_secret("doomed", "v1")
        geo.wait_seq("west", status_of(geo, "east")["seq"])
        geo.cut("east", "west")
        # East still accepts writes (no witness, manual policy): these never reach west.
        lost = [secrets_east.set_secret(f"only-east-{i}", f"e{i}") for i in range(3)]
        secrets_east.begin_delete_secret("doomed").wait()
        refused = geo.admin("region", "failover", "--to", "west", via=west, check=False)
        assert refused.returncode != 0 and "--force" in refused.stderr
        result = geo.admin("region", "failover", "--to", "west", "--force", via=west)
        assert result["epoch"] == 2
        secrets_west = geo.secret_client(west, principal)
        secrets_west.set_secret("after-failover", "w")
        secrets_west.begin_delete_secret("doomed").wait()     # makes east's delete conflict
        geo.heal()
        wait_for(lambda: status_of(geo, "east")["role"] == "secondary", 20, "east to learn epoch 2")
        records = wait_for(lambda: geo.admin("region", "divergence", "list", via=east), 20, "a divergence record")
        assert len(records) == 1 and records[0]["entries"] == 4 and records[0]["status"] == "pending"
        shown = geo.admin("region", "divergence", "show", records[0]["id"], via=east)
        objects = [e["object"] for e in shown["entries"]]
        assert objects == [f"demo/secrets/only-east-{i}" for i in range(3)] + ["demo/secrets/doomed"]
        assert all(e["caller"] == principal["client_id"] and e["time"] for e in shown["entries"])
        assert [e["version"] for e in shown["entries"][:3]] == [s.properties.version for s in lost]
        # East is a secondary of west now, with west's history (the unreplicated writes are
        # only in the record).
        geo.wait_seq("east", status_of(geo, "west")["seq"])
        assert geo.secret_client(east, principal).get_secret("after-failover").value == "w"
        with pytest.raises(HttpResponseError):
            geo.secret_client(west, principal).get_secret("only-east-0")
        applied = geo.admin("region", "divergence", "apply", records[0]["id"], via=east)
        assert applied["status"] == "applied"
        outcomes = applied["outcomes"]
        assert [o["ok"] for o in outcomes] == [True, True, True, False]
        assert "doomed" in outcomes[3]["conflict"]
        for i, s in enumerate(lost):
            got = secrets_west.get_secret(f"only-east-{i}")
            assert got.value == f"e{i}" and got.properties.version == s.properties.version
        again = geo.admin("region", "divergence", "apply", records[0]["id"], via=east, check=False)
        assert again.returncode != 0
    finally:
        geo.stop()


# ----------------------------------------------------------------- automatic failover
@pytest.fixture
def promote_geo(keystead_bin, tmp_path):
    """`failover = "promote"` with a witness: failover_after 4 s, leases of 1.5 s."""
    g = Geo(keystead_bin, tmp_path / "geo", failover="promote", failover_after_ms=4000, lease_ms=1500)
    try:
        g.start()
        yield g
    finally:
        g.stop()


def test_primary_region_killed_with_promote_policy(promote_geo):
    geo = promote_geo
    principal = geo.setup_vault()
    east, west = geo.node("east"), geo.node("west")
    with Writers(geo, principal) as writers:
        time.sleep(3)
        killed_at = time.monotonic()
        east.kill9()
        promoted = wait_for(lambda: status_of(geo, "west")["role"] == "primary" and time.monotonic(),
                            30, "west to promote")
        time.sleep(2)
    print(f"promotion {promoted - killed_at:.2f}s after the kill")
    assert promoted - killed_at >= 4.0
    acked_before = [a for a in writers.acked if a[3] < killed_at]
    acked_after = [a for a in writers.acked if a[3] > promoted]
    assert acked_before and acked_after
    # The old primary returns as a secondary; every write acknowledged before the kill is on
    # the new primary or in the old primary's divergence record.
    east.start()
    geo.wait_healthy(east)
    wait_for(lambda: status_of(geo, "east")["role"] == "secondary", 30, "east to rejoin as secondary")
    geo.wait_seq("east", status_of(geo, "west")["seq"])
    diverged = set()
    for record in geo.admin("region", "divergence", "list", via=east):
        shown = geo.admin("region", "divergence", "show", record["id"], via=east)
        diverged |= {(e["object"].rsplit("/", 1)[1], e["version"]) for e in shown["entries"]}
    token = geo.token(west, principal)
    for name, version, *_ in writers.acked:
        r = geo.request(west, token, "GET", f"/secrets/{name}/{version}")
        assert r.status_code == 200 or (name, version) in diverged, (name, version)


def test_partitions_never_leave_two_regions_accepting_writes(promote_geo):
    geo = promote_geo
    principal = geo.setup_vault()
    east, west = geo.node("east"), geo.node("west")
    # 1. East cut from west only: the witness still hears east, so nobody is promoted and
    #    east keeps accepting writes through its lease from the witness.
    geo.cut("east", "west")
    time.sleep(7)
    assert status_of(geo, "west")["role"] == "secondary"
    assert status_of(geo, "east")["role"] == "primary"
    token_east = geo.token(east, principal)
    assert geo.request(east, token_east, "PUT", "/secrets/still", json={"value": "east"}).status_code == 200
    geo.heal()
    geo.wait_seq("west", status_of(geo, "east")["seq"])
    # 2. East cut from both: it must stop accepting writes before west is promoted.
    with Writers(geo, principal, pinned=["east", "west"]) as writers:
        time.sleep(2)
        cut_at = time.monotonic()
        geo.cut("east", "west")
        geo.cut("east", "witness")
        wait_for(lambda: status_of(geo, "west")["role"] == "primary", 30, "west to promote")
        time.sleep(3)
    east_acks = [a[3] for a in writers.acked if a[2].startswith("east") and a[4] == "primary"]
    west_acks = [a[3] for a in writers.acked if a[2].startswith("west") and a[3] > cut_at
                 and a[4] == "primary"]
    assert west_acks, "the promoted west accepted no writes"
    last_east = max(east_acks)
    first_west = min(west_acks)
    print(f"east's last acknowledged write {last_east - cut_at:.2f}s after the cut; "
          f"west's first {first_west - cut_at:.2f}s after it")
    assert last_east < first_west, "two regions accepted writes at the same time"
    assert last_east > cut_at, "east should keep its lease (and its writes) for a while"
    assert last_east - cut_at < 1.5 + 1.0     # within its lease
    geo.heal()
    wait_for(lambda: status_of(geo, "east")["role"] == "secondary", 20, "east to step down")


def test_automatic_failback_once_the_old_primary_has_caught_up(keystead_bin, tmp_path):
    geo = Geo(keystead_bin, tmp_path / "geo", failover="promote", failover_after_ms=4000, lease_ms=1500,
              failback="automatic")
    try:
        geo.start()
        principal = geo.setup_vault()
        east, west = geo.node("east"), geo.node("west")
        geo.secret_client(east, principal).set_secret("before", "1")
        geo.wait_seq("west", status_of(geo, "east")["seq"])
        east.kill9()
        wait_for(lambda: status_of(geo, "west")["role"] == "primary", 30, "west to promote")
        written = geo.secret_client(west, principal).set_secret("during", "2")
        east.start()
        geo.wait_healthy(east)
        # East rejoins as a secondary, catches up, then takes the primary role back by a
        # planned switchover (epoch 3) without losing what west accepted meanwhile.
        wait_for(lambda: status_of(geo, "east")["role"] == "primary" and status_of(geo, "east")["epoch"] == 3,
                 60, "east to fail back")
        assert geo.secret_client(east, principal).get_secret("during").properties.version == \
            written.properties.version
        wait_for(lambda: status_of(geo, "west")["role"] == "secondary", 20, "west to step down")
    finally:
        geo.stop()


def test_two_secondaries_follow_the_primary_and_a_switchover(keystead_bin, tmp_path):
    geo = Geo(keystead_bin, tmp_path / "geo", regions=("east", "west", "south"))
    try:
        geo.start()
        principal = geo.setup_vault()
        east, west, south = geo.node("east"), geo.node("west"), geo.node("south")
        first = geo.secret_client(east, principal).set_secret("three", "regions")
        for region in ("west", "south"):
            geo.wait_seq(region, status_of(geo, "east")["seq"])
            assert geo.secret_client(geo.node(region), principal).get_secret("three").properties.version == \
                first.properties.version
        status = geo.status(east)
        assert {r["region"]: r["role"] for r in status["regions"]} == \
            {"east": "primary", "west": "secondary", "south": "secondary"}
        # Writes through either secondary reach everyone.
        via_west = geo.secret_client(west, principal).set_secret("via-west", "w")
        # Switch to south: east and west both follow it.
        result = geo.admin("region", "switchover", "--to", "south", via=west)
        assert result["region"] == "south" and result["epoch"] == 2
        wait_for(lambda: status_of(geo, "east")["role"] == "secondary", 20, "east to follow south")
        wait_for(lambda: status_of(geo, "west")["primary"] == "south", 20, "west to follow south")
        after = geo.secret_client(west, principal).set_secret("after-switch", "s")
        for region in ("east", "west"):
            geo.wait_seq(region, status_of(geo, "south")["seq"])
            client = geo.secret_client(geo.node(region), principal)
            assert client.get_secret("via-west").properties.version == via_west.properties.version
            assert client.get_secret("after-switch").properties.version == after.properties.version
    finally:
        geo.stop()


def test_a_switchover_that_cannot_finish_leaves_the_primary_writable(geo):
    principal = geo.setup_vault()
    east, west = geo.node("east"), geo.node("west")
    geo.cut("west", "witness")          # the target cannot record the new epoch
    out = geo.admin("region", "switchover", "--to", "west", via=west, check=False)
    assert out.returncode != 0 and "fence was lifted" in out.stderr, out.stderr
    view = status_of(geo, "east")
    assert view["role"] == "primary" and view["epoch"] == 1 and not view["fenced"]
    assert geo.secret_client(east, principal).set_secret("still-writable", "yes").value == "yes"
    geo.heal()
    assert geo.admin("region", "switchover", "--to", "west", via=west)["epoch"] == 2


def test_a_switchover_whose_request_is_dropped_still_finishes(geo):
    # The operator's request can go away mid-switchover (a client timeout, Ctrl-C). Once the
    # primary is fenced, the switchover must still end one way or the other - west promoted, or
    # the fence taken down again - and not leave the primary fenced with nobody promoted. The
    # witness is made slow (1.5 s each way), so the request (1 s timeout) is dropped while the
    # target waits for the witness, after the fence went up.
    principal = geo.setup_vault()
    east, west = geo.node("east"), geo.node("west")
    geo.proxies["witness"].delay_s = 1.5
    creds = geo.admin_credentials()
    session = make_session(geo.ca)
    with pytest.raises(requests.exceptions.Timeout):
        session.post(f"https://localhost:{west.api_port}/admin/region",
                     json={"op": "switchover", "to": "west"},
                     headers={"Authorization": f"Bearer {creds['token']}"}, timeout=1.0)
    session.close()                      # the connection goes away with the request
    assert status_of(geo, "east")["fenced"], "the request was dropped after the fence went up"

    def outcome():
        view = status_of(geo, "east")
        if view["role"] == "primary" and not view["fenced"]:
            return east                  # the switchover failed and lifted the fence
        if view["role"] == "secondary" and status_of(geo, "west")["role"] == "primary":
            return west                  # it finished: west is the primary
        return None

    primary = wait_for(outcome, 60, "the switchover to finish or lift the fence")
    geo.proxies["witness"].delay_s = 0.0
    value = wait_for(lambda: write_or_none(geo, primary, principal), 30, "a write on the primary")
    assert value == "yes"


def write_or_none(geo: Geo, node, principal: dict):
    try:
        return geo.secret_client(node, principal).set_secret("after-drop", "yes").value
    except HttpResponseError:
        return None
