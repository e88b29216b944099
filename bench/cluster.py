#!/usr/bin/env python3
"""3-node Keystead cluster vs 3-node OpenBao raft cluster, same run, same machine.

Called by bench/run_cluster.sh once both clusters are up (it passes a state JSON file):

  cluster.py STATE.json OUT.json [--duration 6] [--rounds 2] [--warmup 1] [--kills 5]

Steady state (loadgen.py, closed loop, HTTP/1.1 keep-alive, TLS), per phase and round both
clusters back to back, order alternating:
  write_c1, write_c8     new secret per request, sent to the leader (OpenBao: the active node)
  write_c8_follower      the same, sent to a follower (Keystead forwards to the leader; OpenBao
                         standbys forward over the cluster port)
  read_c32_all           one 100-byte secret, 32 connections spread over all 3 nodes
                         (Keystead: linearizable read-index reads; OpenBao: standby reads,
                         served locally, may be stale -- its default)
Failover (--kills runs per cluster, alternating K,O / O,K): the leader (OpenBao: active node)
is killed with SIGKILL while 2 writer threads per surviving node write new secrets in a closed
loop (client timeout 10 s, 10 ms pause after a failure) and 1 reader per surviving node reads
a fixed secret every 10 ms. Unavailability = time from the kill to the completion of the first
acknowledged write that was sent after the kill. The killed node is then restarted and the
cluster must be healthy again (bounded waits) before the next kill.
Afterwards, writes acknowledged around each kill (and a sample of steady writes) are read back.
"""
import argparse
import asyncio
import datetime
import http.client
import json
import os
import platform
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import types
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402
import wrk_phase  # noqa: E402

VALUE = "x" * 100
CLIENT_TIMEOUT_S = 10.0
PRE_KILL_S = 1.5
MAX_WINDOW_S = 30.0        # time bound after a kill
POST_RECOVERY_S = 1.0      # keep the load this long after the first acknowledged write
MAX_REQS_PER_THREAD = 100_000
REJOIN_TIMEOUT_S = 90.0


def now():
    return time.monotonic()


# --- blocking HTTPS to 127.0.0.1 with a chosen TLS name ---------------------------------------
class Conn(http.client.HTTPSConnection):
    def __init__(self, port, sni, ctx, timeout):
        super().__init__(sni, port, timeout=timeout, context=ctx)
        self._sni, self._port, self._ctx = sni, port, ctx

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self._port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._sni)


class Client:
    """One keep-alive connection; reconnects after an error. Returns (status|None, body)."""

    def __init__(self, port, sni, ctx, headers, timeout=CLIENT_TIMEOUT_S):
        self.port, self.sni, self.ctx, self.timeout = port, sni, ctx, timeout
        self.headers = {"Host": f"{sni}:{port}", **headers}
        self.c = None

    def req(self, method, path, body=None):
        if self.c is None:
            self.c = Conn(self.port, self.sni, self.ctx, self.timeout)
        try:
            self.c.request(method, path, body=body, headers=self.headers)
            r = self.c.getresponse()
            return r.status, r.read()
        except Exception as e:  # refused / reset / timeout
            try:
                self.c.close()
            except Exception:
                pass
            self.c = None
            return None, repr(e).encode()[:200]

    def close(self):
        if self.c is not None:
            try:
                self.c.close()
            except Exception:
                pass
            self.c = None


def get_json(port, sni, ctx, headers, path, timeout=2.0):
    st, body = Client(port, sni, ctx, headers, timeout).req("GET", path)
    try:
        return st, json.loads(body) if st is not None else None
    except ValueError:
        return st, None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_process(argv, log_path, pid_file):
    log = open(log_path, "ab")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    with open(pid_file, "w") as f:  # run_cluster.sh's trap stops every PID in these files
        f.write(str(p.pid))
    return p.pid


def kill9(node):
    pid = node["pid"]
    try:
        os.unlink(node["pid_file"])  # so the trap never signals a PID that may be reused
    except OSError:
        pass
    os.kill(pid, signal.SIGKILL)    # a PID this harness started
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # started by run_cluster.sh: it reaps it


# --- the two clusters ------------------------------------------------------------------------
class KeysteadCluster:
    name = "keystead"

    def __init__(self, st):
        self.st = st
        self.nodes = st["nodes"]  # [{id, port, pid, pid_file, config, log}]
        self.ca = st["ca"]
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.sni = "demo.vault.localhost"
        self.admin_hdr = {"Authorization": f"Bearer {st['admin_token']}"}
        p = st["principal"]
        self.tokens = {}
        for n in self.nodes:  # the token audience holds the port: one token per node
            form = urllib.parse.urlencode({
                "grant_type": "client_credentials", "client_id": p["client_id"],
                "client_secret": p["client_secret"],
                "scope": f"https://vault.localhost:{n['port']}/.default"})
            c = Client(n["port"], "localhost", self.ctx,
                       {"Content-Type": "application/x-www-form-urlencoded"})
            code, body = c.req("POST", f"/{p['tenant_id']}/oauth2/v2.0/token", form)
            if code != 200:
                raise SystemExit(f"keystead token from node {n['id']}: HTTP {code}: {body[:300]!r}")
            self.tokens[n["id"]] = json.loads(body)["access_token"]
        self.write_body = json.dumps({"value": VALUE})
        self.write_method = "PUT"

    def headers(self, n):
        return {"Authorization": f"Bearer {self.tokens[n['id']]}", "Content-Type": "application/json"}

    def hdr_list(self, n):
        return [f"{k}: {v}" for k, v in self.headers(n).items()]

    def write_path(self, key):  # key: unique name made of [a-z0-9-]
        return f"/secrets/{key}?api-version=7.6"

    def read_path(self, key):
        return f"/secrets/{key}/?api-version=7.6"

    def value_of(self, body):
        return json.loads(body).get("value")

    def client(self, n, timeout=CLIENT_TIMEOUT_S):
        return Client(n["port"], self.sni, self.ctx, self.headers(n), timeout)

    def status(self, n, timeout=2.0):
        return get_json(n["port"], "localhost", self.ctx, self.admin_hdr, "/admin/cluster", timeout)

    def leader(self):
        for n in self.nodes:
            if not pid_alive(n["pid"]):
                continue
            code, j = self.status(n)
            if code == 200 and j and j.get("leader"):
                for m in self.nodes:
                    if m["id"] == j["leader"] and pid_alive(m["pid"]):
                        return m
        return None

    def healthy(self):
        """A leader, every node a voter with lag <= 10, and every node /readyz 200."""
        ld = self.leader()
        if ld is None:
            return False
        code, j = self.status(ld)
        if code != 200 or not j:
            return False
        ns = j.get("nodes", [])
        if len(ns) != len(self.nodes) or any(x.get("role") == "learner" for x in ns):
            return False
        if any(x.get("lag") is None or x["lag"] > 10 for x in ns):
            return False
        for n in self.nodes:
            code, _ = get_json(n["port"], "localhost", self.ctx, {}, "/readyz")
            if code != 200:
                return False
        return True

    def restart(self, n):
        n["pid"] = start_process([self.st["bin"], "serve", "--config", n["config"]], n["log"],
                                 n["pid_file"])


class OpenBaoCluster:
    name = "openbao"

    def __init__(self, st):
        self.st = st
        self.nodes = st["nodes"]  # [{id, port, pid, pid_file, config, log}]
        self.ca = st["ca"]
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.sni = "localhost"
        self.tok = st["token"]
        self.write_body = json.dumps({"data": {"v": VALUE}})
        self.write_method = "POST"

    def headers(self, n):
        return {"X-Vault-Token": self.tok, "Content-Type": "application/json"}

    def hdr_list(self, n):
        return [f"{k}: {v}" for k, v in self.headers(n).items()]

    def write_path(self, key):
        return f"/v1/secret/data/bench/{key}"

    def read_path(self, key):
        return f"/v1/secret/data/bench/{key}"

    def value_of(self, body):
        return json.loads(body)["data"]["data"].get("v")

    def client(self, n, timeout=CLIENT_TIMEOUT_S):
        return Client(n["port"], self.sni, self.ctx, self.headers(n), timeout)

    def leader(self):
        for n in self.nodes:
            if not pid_alive(n["pid"]):
                continue
            code, j = get_json(n["port"], self.sni, self.ctx, self.headers(n), "/v1/sys/leader")
            if code == 200 and j and j.get("is_self"):
                return n
        return None

    def healthy(self):
        for n in self.nodes:
            if not pid_alive(n["pid"]):
                continue
            code, j = get_json(n["port"], self.sni, self.ctx, self.headers(n),
                               "/v1/sys/storage/raft/autopilot/state")
            if code == 200 and j:
                d = j.get("data", j)
                servers = d.get("servers") or {}
                voters = [s for s in servers.values()
                          if s.get("status") in ("leader", "voter") and s.get("healthy")]
                if d.get("healthy") and len(voters) == len(self.nodes):
                    return True
        return False

    def restart(self, n):
        n["pid"] = start_process([self.st["bao"], "server", "-config=" + n["config"]], n["log"],
                                 n["pid_file"])


# --- steady state ----------------------------------------------------------------------------
def phase_args(cl, n, method, path, body, conns, duration, max_requests, pids):
    return types.SimpleNamespace(
        connect_ip="127.0.0.1", port=n["port"], sni=cl.sni, ca=cl.ca, conns=conns,
        duration=duration, max_requests=max_requests, timeout=10.0, method=method, path=path,
        body=body, header=[f"Host: {cl.sni}:{n['port']}"] + cl.hdr_list(n), server_pid=pids)


def run_steady(cl, kind, conns, duration, prefix, max_requests, client="python"):
    """One bounded phase; returns a loadgen raw result (several nodes merged for reads).
    With client="wrk" the read phase runs under wrk (wrk_phase.py); writes always use the
    Python client, which keeps the acknowledged names for the read-back check."""
    pids = [n["pid"] for n in cl.nodes]
    if kind == "read_all":
        per = [conns // len(cl.nodes) + (1 if i < conns % len(cl.nodes) else 0)
               for i in range(len(cl.nodes))]
        args = [phase_args(cl, n, "GET", cl.read_path("read"), None, c, duration,
                           max_requests // len(cl.nodes), pids if i == 0 else [])
                for i, (n, c) in enumerate(zip(cl.nodes, per))]
    else:
        ld = cl.leader()
        target = ld if kind == "write_leader" else [n for n in cl.nodes if n is not ld][0]
        args = [phase_args(cl, target, cl.write_method, cl.write_path(f"{prefix}-{{c}}-{{n}}"),
                           cl.write_body, conns, duration, max_requests, pids)]
    if client == "wrk" and kind == "read_all":
        raws = wrk_phase.run_many(args)
    else:
        loop = loadgen.new_loop()
        try:
            async def all_():
                return await asyncio.gather(*[loadgen.run_phase(a) for a in args])
            raws = loop.run_until_complete(all_())
        finally:
            loop.close()
    m = dict(raws[0])  # CPU and machine figures come from the first (it watches all PIDs)
    m["lat"] = [x for r in raws for x in r["lat"]]
    m["elapsed_s"] = max(r["elapsed_s"] for r in raws)
    m["status_counts"], m["errors"], m["samples"], m["ok_paths"] = {}, {}, [], []
    for r in raws:
        m["samples"] += r["samples"][:5 - len(m["samples"])]
        m["ok_paths"] += r["ok_paths"]
        for d in ("status_counts", "errors"):
            for k, v in r[d].items():
                m[d][k] = m[d].get(k, 0) + v
    m["target_ports"] = [a.port for a in args]
    return m


def merge(raws):
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


PHASES = [
    # (id, kind, conns)
    ("write_c1", "write_leader", 1),
    ("write_c8", "write_leader", 8),
    ("write_c8_follower", "write_follower", 8),
    ("read_c32_all", "read_all", 32),
]


# --- failover --------------------------------------------------------------------------------
def failover_once(cl, it, writers_per_node=2):
    leader = cl.leader()
    if leader is None:
        raise RuntimeError(f"{cl.name}: no leader before kill {it}")
    survivors = [n for n in cl.nodes if n is not leader]
    stop = threading.Event()
    t_kill = [None]
    first_ok = [None]
    recs = []  # (kind, node_id, t_send, t_done, status, err, key)
    lock = threading.Lock()

    def writer(n, w):
        c = cl.client(n)
        for i in range(MAX_REQS_PER_THREAD):
            if stop.is_set():
                break
            key = f"fo{it}-n{n['id']}w{w}-{i}"
            ts = now()
            code, body = c.req(cl.write_method, cl.write_path(key), cl.write_body)
            td = now()
            ok = code == 200
            with lock:
                recs.append(("w", n["id"], ts, td, code, b"" if ok else body[:160], key))
                if ok and t_kill[0] is not None and ts > t_kill[0] and first_ok[0] is None:
                    first_ok[0] = td
            if not ok:
                time.sleep(0.01)
        c.close()

    def reader(n):
        c = cl.client(n)
        for i in range(MAX_REQS_PER_THREAD):
            if stop.is_set():
                break
            ts = now()
            code, body = c.req("GET", cl.read_path("fostatic"))
            td = now()
            ok = code == 200
            with lock:
                recs.append(("r", n["id"], ts, td, code, b"" if ok else body[:160], None))
            time.sleep(0.01)
        c.close()

    threads = [threading.Thread(target=writer, args=(n, w), daemon=True)
               for n in survivors for w in range(writers_per_node)]
    threads += [threading.Thread(target=reader, args=(n,), daemon=True) for n in survivors]
    for t in threads:
        t.start()
    time.sleep(PRE_KILL_S)
    t_kill[0] = now()
    tk_wall = time.time()
    kill9(leader)
    deadline = t_kill[0] + MAX_WINDOW_S
    while now() < deadline:
        if first_ok[0] is not None and now() > first_ok[0] + POST_RECOVERY_S:
            break
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(timeout=CLIENT_TIMEOUT_S + 2)
    tk = t_kill[0]
    with lock:
        recs = list(recs)
    writes = [r for r in recs if r[0] == "w"]
    reads = [r for r in recs if r[0] == "r"]
    ok_after = [r for r in writes if r[4] == 200 and r[2] > tk]
    first = min((r[3] for r in ok_after), default=None)
    last_before = max((r[3] for r in writes if r[4] == 200 and r[3] <= tk), default=None)
    win_end = first if first is not None else tk + MAX_WINDOW_S
    # reads that were in flight at, or sent during, the window
    reads_win = [r for r in reads if r[3] >= tk and r[2] <= win_end]
    errs = {}
    for r in writes + reads:
        if r[4] != 200 and r[3] >= tk:
            k = f"{'write' if r[0] == 'w' else 'read'} node{r[1]}: {r[4]} {r[5][:90].decode(errors='replace')}"
            errs[k] = errs.get(k, 0) + 1
    pre = sorted(r[3] - r[2] for r in writes if r[4] == 200 and r[3] < tk)
    res = {
        "system": cl.name, "kill": it, "killed_node": leader["id"],
        "unavailable_s": None if first is None else round(first - tk, 3),
        "gap_last_ack_to_first_ack_s": None if (first is None or last_before is None)
        else round(first - last_before, 3),
        "new_leader": None,
        "writes_acked_pre_kill": len(pre),
        "pre_kill_write_p50_ms": round(1000 * pre[len(pre) // 2], 2) if pre else None,
        "writes_failed_after_kill": sum(1 for r in writes if r[4] != 200 and r[3] >= tk),
        "reads_in_window": len(reads_win),
        "reads_failed_in_window": sum(1 for r in reads_win if r[4] != 200),
        "read_max_latency_in_window_ms": round(1000 * max((r[3] - r[2] for r in reads_win),
                                                           default=0), 1),
        "reads_after_kill": sum(1 for r in reads if r[3] >= tk),
        "reads_failed_after_kill": sum(1 for r in reads if r[3] >= tk and r[4] != 200),
        "errors_after_kill": dict(sorted(errs.items(), key=lambda kv: -kv[1])[:12]),
    }
    res["log_breakdown"] = log_breakdown(cl, survivors, tk_wall)
    # acknowledged writes around the kill, for read-back later (survivors acked them)
    acked = [(r[6], r[1]) for r in writes if r[4] == 200 and r[3] > tk - 1.0]
    # writes answered with an HTTP error after the kill: checked later for whether they exist
    res["http_failed_write_keys"] = [(r[6], r[4], r[5][:300].decode(errors="replace"))
                                     for r in writes if r[4] not in (200, None) and r[3] >= tk
                                     and r[4] != 307][:20]
    # restart the killed node; wait (bounded) for a healthy cluster
    t0 = now()
    cl.restart(leader)
    healthy = False
    while now() - t0 < REJOIN_TIMEOUT_S:
        if cl.healthy():
            healthy = True
            break
        time.sleep(0.25)
    res["rejoin_healthy_s"] = round(now() - t0, 2) if healthy else None
    nl = cl.leader()
    res["new_leader"] = nl["id"] if nl else None
    return res, acked


LOG_MARKS = {
    # Keystead (openraft): election started, new leader established
    "keystead": {"do trigger election": "election_started_s", "become leader id=": "raft_leader_s"},
    # OpenBao (as failover.py): raft heartbeat timeout, raft leader, active node ready
    "openbao": {"heartbeat timeout reached": "election_started_s", "entering leader state": "raft_leader_s",
                "post-unseal setup complete": "active_ready_s"},
}


def log_breakdown(cl, survivors, tk_wall):
    """Seconds after the kill at which the survivors' logs first show each mark."""
    import re
    marks = LOG_MARKS[cl.name]
    first = {}
    for n in survivors:
        try:
            with open(n["log"], errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for ln in lines:
            ln = re.sub(r"\x1b\[[0-9;]*m", "", ln)
            try:
                ts = datetime.datetime.strptime(ln[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
            except ValueError:
                continue
            if ts < tk_wall - 0.001:
                continue
            for m, k in marks.items():
                if m in ln:
                    v = round(ts - tk_wall, 3)
                    if k not in first or v < first[k]:
                        first[k] = v
    return first


def readback(cl, keys, limit):
    """Read acknowledged writes back (Keystead: any node, linearizable; OpenBao: the active
    node, since standbys may be stale)."""
    ld = cl.leader()
    if ld is None:
        return {"checked": 0, "bad": None, "note": "no leader"}
    c = cl.client(ld)
    bad = []
    for key in keys[:limit]:
        code, body = c.req("GET", cl.read_path(key))
        ok = code == 200
        if ok:
            try:
                ok = cl.value_of(body) == VALUE
            except Exception:
                ok = False
        if not ok:
            bad.append((key, code, body[:120].decode(errors="replace")))
    c.close()
    return {"checked": min(limit, len(keys)), "bad": len(bad), "bad_samples": bad[:5]}


# --- main ------------------------------------------------------------------------------------
def fmt(v, nd=0):
    return "-" if v is None else f"{v:,.{nd}f}"


def ratio(a, b):
    return None if not a or not b else a / b


def rss_mb(pid):
    try:
        for ln in open(f"/proc/{pid}/status"):
            if ln.startswith("VmRSS:"):
                return round(int(ln.split()[1]) / 1024)
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("state")
    ap.add_argument("out")
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--max-requests", type=int, default=300_000)
    ap.add_argument("--client", choices=("python", "wrk"), default="python",
                    help="load generator of the read phase: loadgen.py (default) or wrk")
    a = ap.parse_args()
    st = json.load(open(a.state))
    ks, ob = KeysteadCluster(st["keystead"]), OpenBaoCluster(st["openbao"])
    systems = [ks, ob]
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    tls = {}
    for cl in systems:  # seed the read secrets, check them from every node
        ld = cl.leader()
        c = cl.client(ld)
        for key in ("read", "fostatic"):
            code, body = c.req(cl.write_method, cl.write_path(key), cl.write_body)
            assert code == 200, (cl.name, code, body[:300])
        c.close()
        for n in cl.nodes:
            t_end = now() + 5  # OpenBao standbys may lag ~100 ms
            while True:
                code, body = cl.client(n).req("GET", cl.read_path("read"))
                if code == 200 or now() > t_end:
                    break
                time.sleep(0.05)
            assert code == 200 and cl.value_of(body) == VALUE, (cl.name, n["id"], code, body[:300])
        conn = Conn(ld["port"], cl.sni, cl.ctx, 5)
        conn.connect()
        tls[cl.name] = (conn.sock.version(), conn.sock.cipher()[0])
        conn.close()
    print(f"# loadgen: python {platform.python_version()}, "
          f"{'uvloop' if loadgen.uvloop else 'asyncio'}; read phase client {a.client}; {a.rounds} x {a.duration:g} s per phase "
          f"and cluster; {a.kills} kills per cluster; loadavg {load0[0]:.2f}", flush=True)
    for cl in systems:
        print(f"# {cl.name}: TLS {tls[cl.name][0]} {tls[cl.name][1]}; leader node "
              f"{cl.leader()['id']}", flush=True)

    # idle CPU of each 3-node cluster, both measured over the same 3 s with no load
    c0 = {cl.name: loadgen.cpu_ticks([n["pid"] for n in cl.nodes]) for cl in systems}
    m0 = loadgen.machine_busy()
    time.sleep(3.0)
    m1 = loadgen.machine_busy()
    idle_cores = {cl.name: round((loadgen.cpu_ticks([n["pid"] for n in cl.nodes]) - c0[cl.name])
                                 / 3.0, 3) for cl in systems}
    idle_cores["machine_busy"] = round((m1[0] - m0[0]) / 3.0, 2)
    print(f"# idle CPU over 3 s (cores, 3 nodes together): keystead {idle_cores['keystead']}, "
          f"openbao {idle_cores['openbao']}; whole machine busy {idle_cores['machine_busy']}",
          flush=True)

    if a.warmup > 0:
        for cl in systems:
            run_steady(cl, "write_leader", 8, a.warmup, "warm", a.max_requests)
            run_steady(cl, "read_all", 32, a.warmup, "warm", a.max_requests, a.client)

    results = {cl.name: {} for cl in systems}
    written = {cl.name: [] for cl in systems}
    for i, (pid_, kind, conns) in enumerate(PHASES):
        raws = {cl.name: [] for cl in systems}
        per_run = {cl.name: [] for cl in systems}
        for rnd in range(a.rounds):
            order = systems if (i + rnd) % 2 == 0 else list(reversed(systems))
            for cl in order:
                raw = run_steady(cl, kind, conns, a.duration,
                                 f"s{pid_.replace('_', '')}r{rnd}", a.max_requests, a.client)
                raws[cl.name].append(raw)
                r = loadgen.summarize(raw, conns)
                per_run[cl.name].append({k: r[k] for k in (
                    "rps", "p50_ms", "p99_ms", "server_cpu_us_per_req", "server_cores",
                    "client_cores", "other_procs_cores", "requests", "non2xx")}
                    | {"round": rnd + 1, "errors": r["transport_errors"],
                       "ports": raw["target_ports"]})
                errs = r["non2xx"] + sum(r["transport_errors"].values())
                print(f"{pid_:17} r{rnd + 1} {cl.name:8} {fmt(r['rps'], 1):>8} req/s"
                      f"  p50 {fmt(r['p50_ms'], 2):>6} ms  p99 {fmt(r['p99_ms'], 2):>7} ms"
                      f"  srv {fmt(r['server_cpu_us_per_req']):>5} us/req  cores srv/cli/others "
                      f"{r['server_cores']:.2f}/{r['client_cores']:.2f}/{r['other_procs_cores']:.2f}"
                      f"  errors {errs}", flush=True)
                for smp in r["error_samples"]:
                    print(f"    ! {smp}", flush=True)
        for cl in systems:
            m = merge(raws[cl.name])
            results[cl.name][pid_] = loadgen.summarize(m, conns) | {"runs": per_run[cl.name]}
            for p in m["ok_paths"]:  # back to a key name
                if cl.name == "keystead":
                    written[cl.name].append(p.split("/secrets/")[1].split("?")[0])
                else:
                    written[cl.name].append(p.split("/bench/")[1])
    rss = {cl.name: [rss_mb(n["pid"]) for n in cl.nodes] for cl in systems}

    # failover
    fo = {cl.name: [] for cl in systems}
    fo_acked = {cl.name: [] for cl in systems}
    for it in range(1, a.kills + 1):
        order = systems if it % 2 == 1 else list(reversed(systems))
        for cl in order:
            time.sleep(1.0)
            m0 = loadgen.machine_busy()
            r, acked = failover_once(cl, it)
            m1 = loadgen.machine_busy()
            r["machine_busy_cores"] = round((m1[0] - m0[0]) / max(1e-9, (m1[1] - m0[1])) *
                                            (os.cpu_count() or 1), 2)
            fo[cl.name].append(r)
            fo_acked[cl.name] += acked
            print(f"failover {it} {cl.name:8} killed node {r['killed_node']}: write unavailable "
                  f"{fmt(r['unavailable_s'], 3)} s (last ack before -> first after "
                  f"{fmt(r['gap_last_ack_to_first_ack_s'], 3)} s); reads failed in window "
                  f"{r['reads_failed_in_window']}/{r['reads_in_window']} (max read latency "
                  f"{r['read_max_latency_in_window_ms']} ms); failed writes after kill "
                  f"{r['writes_failed_after_kill']}; new leader {r['new_leader']}; "
                  f"healthy again after {r['rejoin_healthy_s']} s; from logs {r['log_breakdown']}",
                  flush=True)
            for k, v in list(r["errors_after_kill"].items())[:4]:
                print(f"    ! {v} x {k}", flush=True)
            if r["rejoin_healthy_s"] is None:
                raise SystemExit(f"{cl.name} did not become healthy after kill {it}")

    # read-back: every write acknowledged from 1 s before each kill on, plus 100 steady ones
    rb = {}
    for cl in systems:
        steady = list(written[cl.name])
        random.Random(1).shuffle(steady)
        keys = [k for k, _ in fo_acked[cl.name]] + steady[:100]
        rb[cl.name] = readback(cl, keys, 3000)
        rb[cl.name]["failover_acked"] = len(fo_acked[cl.name])
        # writes that failed with an HTTP error (not 307) after a kill: did they take effect?
        failed = [k for r in fo[cl.name] for k, _, _ in r["http_failed_write_keys"]]
        if failed:
            chk = readback(cl, failed, 100)
            rb[cl.name]["http_failed_writes"] = {"checked": chk["checked"],
                                                 "present_with_value": chk["checked"] - chk["bad"],
                                                 "absent_or_other": chk["bad_samples"]}
            print(f"# {cl.name}: {chk['checked'] - chk['bad']} of {chk['checked']} writes that "
                  f"got an HTTP error after a kill exist afterwards", flush=True)
    load1 = os.getloadavg()

    # summary
    K, O = results["keystead"], results["openbao"]

    def fsum(name):
        v = [r["unavailable_s"] for r in fo[name] if r["unavailable_s"] is not None]
        return {"median_s": round(statistics.median(v), 3) if v else None,
                "min_s": min(v) if v else None, "max_s": max(v) if v else None,
                "runs": v, "kills": len(fo[name]),
                "reads_failed_in_windows": sum(r["reads_failed_in_window"] for r in fo[name]),
                "reads_in_windows": sum(r["reads_in_window"] for r in fo[name]),
                "reads_failed_after_kills": sum(r["reads_failed_after_kill"] for r in fo[name]),
                "reads_after_kills": sum(r["reads_after_kill"] for r in fo[name]),
                "writes_failed_after_kills": sum(r["writes_failed_after_kill"] for r in fo[name])}

    FK, FO = fsum("keystead"), fsum("openbao")
    rows = []
    for pid_, kind, conns in PHASES:
        k, o = K[pid_], O[pid_]
        rows.append((f"{pid_} req/s", fmt(k["rps"]), fmt(o["rps"]),
                     fmt(ratio(k["rps"], o["rps"]), 2) + "x", "K/O"))
        rows.append((f"{pid_} p50 / p99 ms", f"{fmt(k['p50_ms'], 2)} / {fmt(k['p99_ms'], 1)}",
                     f"{fmt(o['p50_ms'], 2)} / {fmt(o['p99_ms'], 1)}",
                     f"{fmt(ratio(k['p50_ms'], o['p50_ms']), 2)}x / "
                     f"{fmt(ratio(k['p99_ms'], o['p99_ms']), 2)}x", "K/O (lower = Keystead faster)"))
        rows.append((f"{pid_} server CPU us/req (3 nodes)", fmt(k["server_cpu_us_per_req"]),
                     fmt(o["server_cpu_us_per_req"]),
                     fmt(ratio(k["server_cpu_us_per_req"], o["server_cpu_us_per_req"]), 2) + "x",
                     "K/O (lower = Keystead cheaper)"))
        ke = k["non2xx"] + sum(k["transport_errors"].values())
        oe = o["non2xx"] + sum(o["transport_errors"].values())
        rows.append((f"{pid_} errors", f"{ke} of {k['requests']}", f"{oe} of {o['requests']}", "", ""))
    rows.append(("write unavailability after kill -9 of leader, median s",
                 fmt(FK["median_s"], 3), fmt(FO["median_s"], 3),
                 fmt(ratio(FK["median_s"], FO["median_s"]), 3) + "x", "K/O (lower = Keystead faster)"))
    rows.append(("  per kill s", ", ".join(fmt(x, 2) for x in FK["runs"]),
                 ", ".join(fmt(x, 2) for x in FO["runs"]), "", ""))
    rows.append(("reads failed in windows / reads", f"{FK['reads_failed_in_windows']} / {FK['reads_in_windows']}",
                 f"{FO['reads_failed_in_windows']} / {FO['reads_in_windows']}", "", ""))
    rows.append(("RSS per node after steady state MB", "/".join(fmt(x) for x in rss["keystead"]),
                 "/".join(fmt(x) for x in rss["openbao"]), "", ""))
    rows.append(("read-back of acked writes bad/checked",
                 f"{rb['keystead']['bad']}/{rb['keystead']['checked']}",
                 f"{rb['openbao']['bad']}/{rb['openbao']['checked']}", "", ""))
    hdr = ("metric", "Keystead", "OpenBao", "ratio", "ratio means")
    w = [max(len(r[i]) for r in rows + [hdr]) for i in range(5)]
    line = lambda r: "| " + " | ".join(r[i].ljust(w[i]) if i in (0, 4) else r[i].rjust(w[i])
                                       for i in range(5)) + " |"
    print()
    print(line(hdr))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line(r))

    t_w = ratio(K["write_c1"]["p50_ms"], O["write_c1"]["p50_ms"])
    t_w8 = ratio(K["write_c8"]["p50_ms"], O["write_c8"]["p50_ms"])
    t_r = ratio(K["read_c32_all"]["rps"], O["read_c32_all"]["rps"])
    targets = {
        "write_p50_le_0.5x_openbao": {"c1": t_w, "c8": t_w8,
                                      "met": bool(t_w is not None and t_w8 is not None
                                                  and t_w <= 0.5 and t_w8 <= 0.5)},
        "read_throughput_ge_3x_openbao": {"ratio": t_r, "met": bool(t_r is not None and t_r >= 3)},
        "write_unavailability_le_1s": {"median_s": FK["median_s"],
                                       "met": bool(FK["median_s"] is not None and FK["median_s"] <= 1.0)},
    }
    print("\ntargets (from the issue):")
    print(f"  write p50 <= 0.5x OpenBao's:   c1 {fmt(t_w, 2)}x, c8 {fmt(t_w8, 2)}x  -> "
          f"{'MET' if targets['write_p50_le_0.5x_openbao']['met'] else 'NOT MET'}")
    print(f"  read throughput >= 3x OpenBao: {fmt(t_r, 2)}x  -> "
          f"{'MET' if targets['read_throughput_ge_3x_openbao']['met'] else 'NOT MET'}")
    print(f"  write unavailability <= 1 s:   median {fmt(FK['median_s'], 3)} s  -> "
          f"{'MET' if targets['write_unavailability_le_1s']['met'] else 'NOT MET'}")

    out = {
        "benchmark": "3-node cluster: secret write/read and leader-kill failover, Keystead vs OpenBao, same run",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"duration_s": a.duration, "rounds": a.rounds, "warmup_s": a.warmup,
                     "kills": a.kills, "max_requests": a.max_requests, "value_bytes": len(VALUE),
                     "phases": PHASES, "client_timeout_s": CLIENT_TIMEOUT_S,
                     "pre_kill_s": PRE_KILL_S, "max_window_s": MAX_WINDOW_S,
                     "post_recovery_s": POST_RECOVERY_S,
                     "failover_load": "2 closed-loop writer threads per surviving node (new key "
                                      "per write, 10 ms pause after a failure), 1 reader per "
                                      "surviving node every 10 ms",
                     "read_modes": {"keystead": "linearizable (read-index to the leader), all 3 nodes",
                                    "openbao": "standby reads (default, served locally, may be stale), all 3 nodes"}},
        "machine": {"nproc": os.cpu_count(), "loadavg_start": load0, "loadavg_end": load1,
                    "kernel": platform.release(), "python": platform.python_version(),
                    "event_loop": "uvloop" if loadgen.uvloop else "asyncio",
                    "read_phase_client": a.client},
        "servers": {"keystead": {k: v for k, v in st["keystead"].items()
                                 if k not in ("admin_token", "principal")} | {"tls": tls["keystead"]},
                    "openbao": {k: v for k, v in st["openbao"].items() if k != "token"}
                    | {"tls": tls["openbao"]}},
        "results": results,
        "failover": {"keystead": fo["keystead"], "openbao": fo["openbao"],
                     "summary": {"keystead": FK, "openbao": FO}},
        "readback": rb,
        "rss_mb_after_steady": rss,
        "idle_cpu_cores": idle_cores,
        "ratios": {pid_: {
            "throughput_keystead_over_openbao": ratio(K[pid_]["rps"], O[pid_]["rps"]),
            "p50_keystead_over_openbao": ratio(K[pid_]["p50_ms"], O[pid_]["p50_ms"]),
            "p99_keystead_over_openbao": ratio(K[pid_]["p99_ms"], O[pid_]["p99_ms"]),
            "server_cpu_keystead_over_openbao": ratio(K[pid_]["server_cpu_us_per_req"],
                                                      O[pid_]["server_cpu_us_per_req"]),
        } for pid_, _, _ in PHASES} | {"unavailability_keystead_over_openbao":
                                       ratio(FK["median_s"], FO["median_s"])},
        "targets": targets,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.out)
    print(f"\nresults: {a.out}")
    total_err = sum(r["non2xx"] + sum(r["transport_errors"].values())
                    for x in results.values() for r in x.values())
    bad_rb = sum(v["bad"] or 0 for v in rb.values())
    if total_err or bad_rb:
        print(f"WARNING: {total_err} failed steady-state requests, {bad_rb} bad read-backs (see the JSON)")


if __name__ == "__main__":
    main()
