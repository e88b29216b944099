#!/usr/bin/env python3
"""Single-node Keystead vs OpenBao: secret write c1/c8 and read c32, same client, same run.

Called by bench/run_single.sh once both servers are up (it passes a targets JSON file);
prints a table and writes the results JSON. Usage:

  single.py TARGETS.json OUT.json [--duration 10] [--rounds 2] [--warmup 2] [--max-requests N]

Phases run interleaved: for each phase and round, both servers back to back, the order
alternating (K,O then O,K), so slow drift of the machine's load hits both alike. A phase's
figures pool its rounds (requests / time, percentiles over all latency samples); the JSON
also keeps each run.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import ssl
import sys
import types
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402

VALUE = "x" * 100  # 100-byte secret value, as in the OpenBao baseline


# --- tiny blocking HTTPS helper for setup and checks (not timed) ------------------------------
def https(ip, port, sni, ca, method, path, headers=None, body=None, timeout=10):
    import http.client

    ctx = ssl.create_default_context(cafile=ca)

    class Conn(http.client.HTTPSConnection):
        def connect(self):
            import socket

            sock = socket.create_connection((ip, port), timeout)
            self.sock = ctx.wrap_socket(sock, server_hostname=sni)

    c = Conn(sni, port, timeout=timeout, context=ctx)
    h = {"Host": f"{sni}:{port}"}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    tls = (c.sock.version(), c.sock.cipher()[0]) if c.sock else None
    c.close()
    return r.status, data, tls


# --- the two targets -------------------------------------------------------------------------
class Keystead:
    name = "keystead"

    def __init__(self, t):
        self.t = t
        cred = json.load(open(t["credentials"]))
        self.ca = cred["ca_cert"]
        self.port = int(t["port"])
        u = urllib.parse.urlparse(cred["vault_url"])
        self.sni = u.hostname  # demo.vault.localhost: connected to 127.0.0.1, SNI + Host set
        self.pid = int(t["pid"])
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": cred["client_id"],
            "client_secret": cred["client_secret"],
            "scope": f"https://vault.localhost:{self.port}/.default"})
        st, body, _ = https("127.0.0.1", self.port, "localhost", self.ca, "POST",
                            f"/{cred['tenant_id']}/oauth2/v2.0/token",
                            {"Content-Type": "application/x-www-form-urlencoded"}, form)
        if st != 200:
            raise SystemExit(f"keystead token request: HTTP {st}: {body[:300]!r}")
        self.token = json.loads(body)["access_token"]
        self.headers = [f"Authorization: Bearer {self.token}", "Content-Type: application/json"]
        self.write_body = json.dumps({"value": VALUE})

    def write_path(self, prefix):
        return f"/secrets/{prefix}-{{c}}-{{n}}?api-version=7.6"

    def read_path(self):
        return "/secrets/bench-read/?api-version=7.6"

    def req(self, method, path, body=None):
        h = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return https("127.0.0.1", self.port, self.sni, self.ca, method, path, h, body)

    def seed(self):
        st, b, tls = self.req("PUT", "/secrets/bench-read?api-version=7.6", self.write_body)
        assert st == 200, (st, b[:300])
        st, b, _ = self.req("GET", self.read_path())
        assert st == 200 and json.loads(b)["value"] == VALUE, (st, b[:300])
        return tls

    def check(self, path):
        # path is the PUT path "/secrets/<name>?api-version=7.6" -> read it back
        st, b, _ = self.req("GET", path.replace("?", "/?"))
        return st == 200 and json.loads(b).get("value") == VALUE, st


class OpenBao:
    name = "openbao"

    def __init__(self, t):
        self.t = t
        self.ca = t["ca"]
        self.port = int(t["port"])
        self.sni = "localhost"
        self.pid = int(t["pid"])
        self.token = t["token"]
        self.headers = [f"X-Vault-Token: {self.token}", "Content-Type: application/json"]
        self.write_body = json.dumps({"data": {"v": VALUE}})

    def write_path(self, prefix):
        return f"/v1/secret/data/bench/{prefix}/{{c}}-{{n}}"

    def read_path(self):
        return "/v1/secret/data/bench/read"

    def req(self, method, path, body=None):
        h = {"X-Vault-Token": self.token, "Content-Type": "application/json"}
        return https("127.0.0.1", self.port, self.sni, self.ca, method, path, h, body)

    def seed(self):
        st, b, tls = self.req("POST", self.read_path(), self.write_body)
        assert st == 200, (st, b[:300])
        st, b, _ = self.req("GET", self.read_path())
        assert st == 200 and json.loads(b)["data"]["data"]["v"] == VALUE, (st, b[:300])
        return tls

    def check(self, path):
        st, b, _ = self.req("GET", path)
        return st == 200 and json.loads(b)["data"]["data"].get("v") == VALUE, st


# --- phases ----------------------------------------------------------------------------------
PHASES = [
    # (id, kind, conns)
    ("write_c1", "write", 1),
    ("write_c8", "write", 8),
    ("read_c32", "read", 32),
]


def phase_args(target, kind, conns, duration, prefix, max_requests):
    if kind == "write":
        method, path, body = ("PUT" if target.name == "keystead" else "POST"), \
            target.write_path(prefix), target.write_body
    else:
        method, path, body = "GET", target.read_path(), None
    return types.SimpleNamespace(
        connect_ip="127.0.0.1", port=target.port, sni=target.sni, ca=target.ca, conns=conns,
        duration=duration, max_requests=max_requests, timeout=10.0, method=method, path=path,
        body=body, header=[f"Host: {target.sni}:{target.port}"] + target.headers,
        server_pid=[target.pid])


def run_raw(target, kind, conns, duration, prefix, max_requests):
    a = phase_args(target, kind, conns, duration, prefix, max_requests)
    loop = loadgen.new_loop()
    try:
        return loop.run_until_complete(loadgen.run_phase(a))
    finally:
        loop.close()


def merge(raws):
    """One raw result from several runs of the same phase (latency samples pooled)."""
    m = {"lat": [], "status_counts": {}, "errors": {}, "samples": [], "ok_paths": []}
    for k in ("elapsed_s", "server_cpu_s", "client_cpu_s", "machine_busy_cpu_s"):
        m[k] = sum(r[k] for r in raws)
    for r in raws:
        m["lat"] += r["lat"]
        m["samples"] += r["samples"][:5 - len(m["samples"])]
        m["ok_paths"] += r["ok_paths"]
        for d in ("status_counts", "errors"):
            for k, v in r[d].items():
                m[d][k] = m[d].get(k, 0) + v
    return m


def rss_kb(pid):
    try:
        for ln in open(f"/proc/{pid}/status"):
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    except OSError:
        return None


def fmt(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def ratio(a, b):
    if not a or not b:
        return None
    return a / b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("targets")
    ap.add_argument("out")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--max-requests", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--readback", type=int, default=100)
    a = ap.parse_args()
    t = json.load(open(a.targets))
    ks, ob = Keystead(t["keystead"]), OpenBao(t["openbao"])
    targets = [ks, ob]
    tls = {x.name: x.seed() for x in targets}
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    print(f"# loadgen: python {platform.python_version()}, "
          f"{'uvloop' if loadgen.uvloop else 'asyncio'}, 1 process, HTTP/1.1 keep-alive; "
          f"{a.rounds} x {a.duration:g} s per phase and server (+{a.warmup:g} s warm-up); "
          f"loadavg {load0[0]:.2f}",
          flush=True)
    for x in targets:
        print(f"# {x.name}: TLS {tls[x.name][0]} {tls[x.name][1]}", flush=True)

    # warm-up: a short write and read burst on each (not recorded)
    if a.warmup > 0:
        for x in targets:
            run_raw(x, "write", 8, a.warmup, "warm", a.max_requests)
            run_raw(x, "read", 32, a.warmup, "warm", a.max_requests)

    results = {x.name: {} for x in targets}
    written = {x.name: [] for x in targets}
    for i, (pid_, kind, conns) in enumerate(PHASES):
        raws = {x.name: [] for x in targets}
        per_run = {x.name: [] for x in targets}
        for rnd in range(a.rounds):
            order = targets if (i + rnd) % 2 == 0 else list(reversed(targets))
            for x in order:
                raw = run_raw(x, kind, conns, a.duration, f"b{pid_.replace('_', '')}r{rnd}",
                              a.max_requests)
                raws[x.name].append(raw)
                r = loadgen.summarize(raw, conns)
                per_run[x.name].append({k: r[k] for k in (
                    "rps", "p50_ms", "p99_ms", "server_cpu_us_per_req", "server_cores",
                    "client_cores", "other_procs_cores", "requests", "non2xx")}
                    | {"round": rnd + 1, "errors": r["transport_errors"]})
                errs = r["non2xx"] + sum(r["transport_errors"].values())
                print(f"{pid_:9} r{rnd + 1} {x.name:8} {fmt(r['rps'], 1):>9} req/s"
                      f"  p50 {fmt(r['p50_ms'], 2):>7} ms  p99 {fmt(r['p99_ms'], 2):>7} ms"
                      f"  srv {fmt(r['server_cpu_us_per_req']):>5} us/req  cores srv/cli/others "
                      f"{r['server_cores']:.2f}/{r['client_cores']:.2f}/{r['other_procs_cores']:.2f}"
                      f"  errors {errs}", flush=True)
                for smp in r["error_samples"]:
                    print(f"    ! {smp}", flush=True)
        for x in targets:
            m = merge(raws[x.name])
            results[x.name][pid_] = loadgen.summarize(m, conns) | {"runs": per_run[x.name]}
            written[x.name] += m["ok_paths"]

    # read back a sample of acknowledged writes from each server
    readback = {}
    for x in targets:
        sample = written[x.name]
        random.Random(1).shuffle(sample)
        sample = sample[:a.readback]
        bad = []
        for p in sample:
            ok, st = x.check(p)
            if not ok:
                bad.append((p, st))
        readback[x.name] = {"checked": len(sample), "bad": len(bad), "bad_samples": bad[:5]}

    rss = {x.name: rss_kb(x.pid) for x in targets}
    load1 = os.getloadavg()

    # table
    rows = []
    K, O = results["keystead"], results["openbao"]
    for pid_, kind, conns in PHASES:
        k, o = K[pid_], O[pid_]
        label = f"secret {kind} c{conns}"
        rows.append((f"{label} req/s", fmt(k["rps"]), fmt(o["rps"]),
                     fmt(ratio(k["rps"], o["rps"]), 2) + "x", "K/O (higher = Keystead faster)"))
        rows.append((f"{label} p50 ms", fmt(k["p50_ms"], 2), fmt(o["p50_ms"], 2),
                     fmt(ratio(o["p50_ms"], k["p50_ms"]), 2) + "x", "O/K (higher = Keystead faster)"))
        rows.append((f"{label} p99 ms", fmt(k["p99_ms"], 2), fmt(o["p99_ms"], 2),
                     fmt(ratio(o["p99_ms"], k["p99_ms"]), 2) + "x", "O/K (higher = Keystead faster)"))
        rows.append((f"{label} server CPU us/req", fmt(k["server_cpu_us_per_req"]),
                     fmt(o["server_cpu_us_per_req"]),
                     fmt(ratio(o["server_cpu_us_per_req"], k["server_cpu_us_per_req"]), 2) + "x",
                     "O/K (higher = Keystead cheaper)"))
        ke = k["non2xx"] + sum(k["transport_errors"].values())
        oe = o["non2xx"] + sum(o["transport_errors"].values())
        rows.append((f"{label} errors", str(ke), str(oe), "", f"of {k['requests']} / {o['requests']}"))
    rows.append(("RSS at end (MB)", fmt((rss["keystead"] or 0) / 1024), fmt((rss["openbao"] or 0) / 1024),
                 "", ""))
    rows.append(("read-back of acked writes (bad/checked)",
                 f"{readback['keystead']['bad']}/{readback['keystead']['checked']}",
                 f"{readback['openbao']['bad']}/{readback['openbao']['checked']}", "", ""))
    w = [max(len(r[i]) for r in rows + [("metric", "Keystead", "OpenBao", "ratio", "ratio means")])
         for i in range(5)]
    line = lambda r: "| " + " | ".join(r[i].ljust(w[i]) if i in (0, 4) else r[i].rjust(w[i])
                                       for i in range(5)) + " |"
    print()
    print(line(("metric", "Keystead", "OpenBao", "ratio", "ratio means")))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line(r))

    out = {
        "benchmark": "single-node secret write/read, Keystead vs OpenBao, same run",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"duration_s": a.duration, "rounds": a.rounds, "warmup_s": a.warmup,
                     "max_requests": a.max_requests,
                     "value_bytes": len(VALUE), "phases": PHASES,
                     "order": "per phase and round both servers back to back; the order alternates "
                              "between rounds and phases (K,O then O,K ...); per-phase figures "
                              "pool all rounds (latency samples merged)"},
        "machine": {"nproc": os.cpu_count(), "loadavg_start": load0, "loadavg_end": load1,
                    "kernel": platform.release(), "python": platform.python_version(),
                    "event_loop": "uvloop" if loadgen.uvloop else "asyncio"},
        "servers": {"keystead": {**t["keystead"], "tls": tls["keystead"]},
                    "openbao": {k: v for k, v in t["openbao"].items() if k != "token"}
                    | {"tls": tls["openbao"]}},
        "results": results,
        "readback": readback,
        "rss_kb_end": rss,
        "ratios": {pid_: {
            "throughput_keystead_over_openbao": ratio(K[pid_]["rps"], O[pid_]["rps"]),
            "p50_openbao_over_keystead": ratio(O[pid_]["p50_ms"], K[pid_]["p50_ms"]),
            "p99_openbao_over_keystead": ratio(O[pid_]["p99_ms"], K[pid_]["p99_ms"]),
            "server_cpu_openbao_over_keystead": ratio(O[pid_]["server_cpu_us_per_req"],
                                                      K[pid_]["server_cpu_us_per_req"]),
        } for pid_, _, _ in PHASES},
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.out)
    print(f"\nresults: {a.out}")
    total_err = sum(r["non2xx"] + sum(r["transport_errors"].values())
                    for x in results.values() for r in x.values())
    bad_rb = sum(v["bad"] for v in readback.values())
    if total_err or bad_rb:
        print(f"WARNING: {total_err} failed requests, {bad_rb} bad read-backs (see the JSON)")


if __name__ == "__main__":
    main()
