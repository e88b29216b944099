"""`keystead demo geo`, black box: one command starts two regions of three zone nodes each plus
a witness; the printed endpoints serve the SDKs; killing the primary region's three processes
makes the secondary region (a three-node Raft cluster itself) promote; SIGINT stops everything.
"""
import json
import os
import re
import signal
import subprocess
import time

from geo_helpers import Geo  # noqa: F401  (resolver patch comes with conftest)
from keystead_helpers import free_port, make_session


def test_demo_geo_starts_fails_over_and_stops(keystead_bin, tmp_path):
    # A base port whose whole demo range (base .. base+2902) looks free.
    base = 20000 + (free_port() % 20) * 1000
    out_dir = tmp_path / "demo"
    demo = subprocess.Popen([keystead_bin, "demo", "geo", "--out", str(out_dir), "--base-port", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restarted = []
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                raise AssertionError(f"demo exited: {demo.stderr.read()}")
            lines.append(line)
            if "Ctrl-C stops the demo" in line:
                break
        text = "".join(lines)
        assert re.search(r"east\s+primary\s+1\s+east", text), text
        assert re.search(r"west\s+secondary\s+1\s+east", text), text
        pids = {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+-\d)\s+https://\S+\s+\(pid (\d+)\)", text)}
        assert len(pids) == 6
        token = re.search(r"admin token:\s+(\S+)", text).group(1)
        ca = str(out_dir / "ca.pem")
        east_api, west_api = base, base + 100

        def admin(*args, port=east_api):
            r = subprocess.run([keystead_bin, *args, "--endpoint", f"https://localhost:{port}",
                                f"--token={token}", "--ca-cert", ca], capture_output=True, text=True, timeout=90)
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout) if r.stdout.strip().startswith(("{", "[")) else r.stdout

        admin("vault", "create", "demo")
        principal = admin("principal", "create", "demo-user")
        admin("role", "assign", "--principal", principal["client_id"], "--role", "Key Vault Administrator",
              "--vault", "demo")
        session = make_session(ca)

        def bearer(port):
            r = session.post(f"https://localhost:{port}/{principal['tenant_id']}/oauth2/v2.0/token",
                             data={"grant_type": "client_credentials", "client_id": principal["client_id"],
                                   "client_secret": principal["client_secret"],
                                   "scope": f"https://vault.localhost:{port}/.default"}, timeout=10)
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        r = session.put(f"https://demo.vault.localhost:{east_api}/secrets/geo", params={"api-version": "7.6"},
                        json={"value": "before"}, headers=bearer(east_api), timeout=15)
        assert r.status_code == 200, r.text
        # Any node of the secondary region forwards writes and reads its own write back: a
        # follower of west's Raft group too (it applies the stream through Raft).
        west_follower = west_api + 2
        headers = bearer(west_follower)
        started = time.monotonic()
        r = session.put(f"https://demo.vault.localhost:{west_follower}/secrets/fwd", params={"api-version": "7.6"},
                        json={"value": "via-west-3"}, headers=headers, timeout=15)
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < 1.9   # no 2 s read-your-write timeout
        r = session.get(f"https://demo.vault.localhost:{west_follower}/secrets/fwd", params={"api-version": "7.6"},
                        headers=headers, timeout=15)
        assert r.status_code == 200 and r.json()["value"] == "via-west-3", r.text
        assert r.headers["x-keystead-region-role"] == "secondary"
        assert "x-keystead-replication-lag-entries" in r.headers
        # Replication is asynchronous: wait until west has the write before failing east (a
        # write that had not replicated would be in east's divergence record instead).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            regions = admin("region", "status", "--json")["regions"]
            if regions[1]["seq"] >= regions[0]["seq"]:
                break
            time.sleep(0.2)
        # Fail region east: its three processes.
        for name in ("east-1", "east-2", "east-3"):
            os.kill(pids[name], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = admin("region", "status", "--json", port=west_api)
            if status["regions"][0]["role"] == "primary":
                break
            time.sleep(0.5)
        assert status["regions"][0]["role"] == "primary", status
        assert status["regions"][0]["epoch"] == 2
        headers = bearer(west_api)
        r = session.get(f"https://demo.vault.localhost:{west_api}/secrets/geo", params={"api-version": "7.6"},
                        headers=headers, timeout=15)
        assert r.status_code == 200 and r.json()["value"] == "before", r.text
        r = session.put(f"https://demo.vault.localhost:{west_api}/secrets/geo", params={"api-version": "7.6"},
                        json={"value": "after"}, headers=headers, timeout=15)
        assert r.status_code == 200, r.text
        # Two of east's three nodes back (a quorum): east rejoins as west's secondary and
        # catches up, as the README says.
        for n in (1, 2):
            log = open(out_dir / "logs" / f"east-{n}-restart.log", "wb")
            restarted.append(subprocess.Popen([keystead_bin, "serve", "--config", str(out_dir / f"east-{n}.toml")],
                                              stdout=log, stderr=log))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            regions = {r["region"]: r for r in admin("region", "status", "--json", port=west_api)["regions"]}
            east = regions.get("east", {})
            if east.get("role") == "secondary" and east.get("seq", -1) >= regions["west"]["seq"]:
                break
            time.sleep(0.5)
        assert east.get("role") == "secondary" and east.get("epoch") == 2, regions
        print("east after restart:", {k: east.get(k) for k in ("role", "epoch", "seq", "primary")}, "west seq", regions["west"]["seq"])
    finally:
        for proc in restarted:
            proc.kill()
            proc.wait(timeout=10)
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    # Every child is gone with the demo.
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(out_dir)], capture_output=True, text=True).stdout.split()
    assert not left, left
