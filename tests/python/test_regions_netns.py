"""Regions in network namespaces: east, west and the witness each run in a namespace of their own,
joined pairwise by veth links that this test creates (and removes), so a partition is a link
going down, exactly as between data centres:

- east cut from west but not from the witness → nobody is promoted, east keeps writing;
- east cut from both → east stops acknowledging writes within its lease, then west promotes; the
  recorded history shows no moment at which both accepted writes.

Addresses are private ones on links the test owns; the test client reaches the nodes through
two more veth links from its own namespace. Needs root (`ip netns`); skipped otherwise.
Latency is not added here (no `tc netem` on this machine; test_regions.py adds it in a proxy).
"""
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from keystead_helpers import make_session
from process_helpers import Proc, wait_healthz

API_PORT, REGION_PORT, WITNESS_PORT = 8443, 7441, 7900


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=20)


def netns_available() -> bool:
    if os.geteuid() != 0:
        return False
    name = f"ks-probe-{os.getpid()}"
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "del", name)
        return True
    except (subprocess.SubprocessError, OSError):
        return False


class Topology:
    """Namespaces e (east), w (west), x (witness); links e-w, e-x, w-x, and root-e, root-w."""

    def __init__(self):
        self.tag = f"ks{os.getpid() % 10000}{random.randint(0, 99)}"
        self.net = f"10.{random.randint(200, 250)}"
        self.ns = {r: f"{self.tag}-{r}" for r in "ewx"}
        self.links = {}            # name -> (ns a or None for root, dev a, ip a, ns b, dev b, ip b)
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        plan = [("ew", "e", "w", 1), ("ex", "e", "x", 2), ("wx", "w", "x", 3), ("re", None, "e", 4), ("rw", None, "w", 5)]
        for name, a, b, subnet in plan:
            dev_a, dev_b = f"{self.tag}{name}a", f"{self.tag}{name}b"
            sh("ip", "link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
            ip_a, ip_b = f"{self.net}.{subnet}.1", f"{self.net}.{subnet}.2"
            for ns, dev, ip in ((a, dev_a, ip_a), (b, dev_b, ip_b)):
                if ns is not None:
                    sh("ip", "link", "set", dev, "netns", self.ns[ns])
                    sh("ip", "-n", self.ns[ns], "addr", "add", f"{ip}/24", "dev", dev)
                    sh("ip", "-n", self.ns[ns], "link", "set", dev, "up")
                else:
                    sh("ip", "addr", "add", f"{ip}/24", "dev", dev)
                    sh("ip", "link", "set", dev, "up")
            self.links[name] = (a, dev_a, ip_a, b, dev_b, ip_b)

    def ip(self, link: str, side: str) -> str:
        a, _, ip_a, b, _, ip_b = self.links[link]
        return ip_a if side == a else ip_b

    def set_link(self, link: str, up: bool) -> None:
        a, dev_a, _, _, _, _ = self.links[link]
        cmd = ["ip"] + (["-n", self.ns[a]] if a else []) + ["link", "set", dev_a, "up" if up else "down"]
        sh(*cmd)

    def all_ips(self):
        return [ip for link in self.links.values() for ip in (link[2], link[5])]

    def remove(self) -> None:
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=20)
        for name, (a, dev_a, *_rest) in self.links.items():
            if a is None:
                subprocess.run(["ip", "link", "del", dev_a], capture_output=True, timeout=20)


@pytest.fixture
def netns_geo(keystead_bin, tmp_path):
    if not netns_available():
        pytest.skip("network namespaces need root and `ip netns`")
    topo = Topology()
    procs = []
    try:
        out = subprocess.run([keystead_bin, "geo", "init", "--out", str(tmp_path / "geo"), "--nodes-per-region", "1",
                              "--san", ",".join(topo.all_ips())], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        plan = json.loads(out.stdout)
        base = Path(plan["dir"])
        common = f'[kek]\nfile = "{base / "kek"}"\n'
        witness_addr = {"e": f'{topo.ip("ex", "x")}:{WITNESS_PORT}', "w": f'{topo.ip("wx", "x")}:{WITNESS_PORT}'}
        peer_addr = {"e": f'{topo.ip("ew", "w")}:{REGION_PORT}', "w": f'{topo.ip("ew", "e")}:{REGION_PORT}'}
        configs = {}
        for r, region, other in (("e", "east", "west"), ("w", "west", "east")):
            node = base / f"{region}-1"
            configs[r] = base / f"{region}-netns.toml"
            configs[r].write_text(
                f'listen = "0.0.0.0:{API_PORT}"\ndata_dir = "{node / "data"}"\nbase_domain = "vault.localhost"\n'
                f'[tls]\ncert = "{node / "cert.pem"}"\nkey = "{node / "key.sealed"}"\n{common}'
                f'[region]\nname = "{region}"\nlisten = "0.0.0.0:{REGION_PORT}"\nca = "{base / "ca.pem"}"\n'
                f'initial_primary = "east"\nwitness = "{witness_addr[r]}"\nfailover = "promote"\n'
                f'failover_after_ms = 4000\nlease_ms = 1500\n'
                f'[[region.peers]]\nname = "{other}"\naddrs = ["{peer_addr[r]}"]\n')
        wdir = base / "witness"
        configs["x"] = base / "witness-netns.toml"
        configs["x"].write_text(
            f'listen = "0.0.0.0:{WITNESS_PORT}"\nstate_file = "{wdir / "state.json"}"\nca = "{base / "ca.pem"}"\n'
            f'restart_grace_ms = 3000\n[tls]\ncert = "{wdir / "cert.pem"}"\nkey = "{wdir / "key.sealed"}"\n{common}')
        for r, args in (("x", ["witness", "--config", str(configs["x"])]),
                        ("e", ["serve", "--config", str(configs["e"])]),
                        ("w", ["serve", "--config", str(configs["w"])])):
            proc = Proc("ip", f"ns-{r}", ["netns", "exec", topo.ns[r], keystead_bin, *args], base / f"{r}.log")
            proc.start()
            procs.append(proc)
        deployment = NetnsGeo(topo, base, procs, keystead_bin)
        for region in ("east", "west"):
            deployment.wait_healthy(region)
        yield deployment
    finally:
        for proc in procs:
            proc.stop()
        topo.remove()


class NetnsGeo:
    def __init__(self, topo: Topology, base: Path, procs, binary: str):
        self.topo, self.base, self.procs, self.binary = topo, base, procs, binary
        self.ca = str(base / "ca.pem")
        self.api = {"east": topo.ip("re", "e"), "west": topo.ip("rw", "w")}
        self.nodes = procs    # for the failure report hook

    def url(self, region: str) -> str:
        return f"https://{self.api[region]}:{API_PORT}"

    def wait_healthy(self, region: str, timeout: float = 90) -> None:
        proc = {p.name: p for p in self.procs}[f"ns-{region[0]}"]
        wait_healthz(proc, self.url(region), self.ca, timeout)

    def admin(self, *args: str, region: str = "east"):
        creds = json.loads((self.base / "east-1" / "data" / "admin.json").read_text())
        out = subprocess.run([self.binary, *args, "--endpoint", self.url(region), f"--token={creds['token']}",
                              "--ca-cert", self.ca], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return json.loads(out.stdout) if out.stdout.strip() else None

    def view(self, region: str) -> dict:
        return self.admin("region", "status", "--json", region=region)["regions"][0]

    def token(self, region: str, principal: dict) -> str:
        r = make_session(self.ca).post(
            f"{self.url(region)}/{principal['tenant_id']}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": principal["client_id"],
                  "client_secret": principal["client_secret"], "scope": f"https://vault.localhost:{API_PORT}/.default"},
            timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def put(self, region: str, token: str, name: str):
        # Vaults are routed by host name; the address is the namespace's.
        return make_session(self.ca).put(
            f"{self.url(region)}/secrets/{name}", params={"api-version": "7.6"}, json={"value": name},
            headers={"Authorization": f"Bearer {token}", "Host": f"demo.vault.localhost:{API_PORT}"}, timeout=10)


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_partitions_between_namespaces(netns_geo):
    geo = netns_geo
    geo.admin("vault", "create", "demo")
    principal = geo.admin("principal", "create", "netns")
    geo.admin("role", "assign", "--principal", principal["client_id"], "--role", "Key Vault Administrator",
              "--vault", "demo")
    wait_for(lambda: geo.view("west")["seq"] >= geo.view("east")["seq"], 30, "west to catch up")
    tokens = {r: geo.token(r, principal) for r in ("east", "west")}

    # East cut from west only: the witness still hears east, nobody is promoted.
    geo.topo.set_link("ew", False)
    time.sleep(7)
    assert geo.view("west")["role"] == "secondary"
    assert geo.put("east", tokens["east"], "still-east").status_code == 200
    geo.topo.set_link("ew", True)
    wait_for(lambda: geo.view("west")["seq"] >= geo.view("east")["seq"], 30, "west to catch up again")

    # East cut from both: it must stop before west starts.
    acked = []          # (region, time)
    refused = []        # (region, time, status or error)
    stop = threading.Event()

    def writer(region: str) -> None:
        for i in range(2000):            # bounded
            if stop.is_set():
                return
            try:
                r = geo.put(region, tokens[region], f"{region}-{i}")
                if r.status_code == 200 and r.headers.get("x-keystead-region-role") == "primary":
                    acked.append((region, time.monotonic()))
                else:
                    refused.append((region, time.monotonic(), r.status_code, r.text[:120]))
            except requests.RequestException as e:
                refused.append((region, time.monotonic(), "error", repr(e)[:120]))
            time.sleep(0.02)
    threads = [threading.Thread(target=writer, args=(r,), daemon=True) for r in ("east", "west")]
    for t in threads:
        t.start()
    time.sleep(2)
    cut_at = time.monotonic()
    geo.topo.set_link("ew", False)
    geo.topo.set_link("ex", False)
    wait_for(lambda: geo.view("west")["role"] == "primary", 30, "west to promote")
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(30)
    last_east = max(t for r, t in acked if r == "east")
    west_after = [t for r, t in acked if r == "west" and t > cut_at]
    assert west_after, [(r, round(t - cut_at, 2), s, m) for r, t, s, m in refused if r == "west"][-10:]
    first_west = min(west_after)
    print(f"netns: east's last write {last_east - cut_at:.2f}s after the cut, west's first {first_west - cut_at:.2f}s")
    assert cut_at < last_east < first_west
    geo.topo.set_link("ew", True)
    geo.topo.set_link("ex", True)
    wait_for(lambda: geo.view("east")["role"] == "secondary", 30, "east to step down")
