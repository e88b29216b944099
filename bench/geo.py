"""Region benchmark driver (see run_geo.sh). Reuses the test suite's deployment helpers
(tests/python/geo_helpers.py): real processes, loopback only, region links through the fault
proxy with a one-way delay. Every loop is bounded.

Measures:
- replication lag: a steady write rate at the primary; for every acknowledged write, the time
  until it is readable at the secondary (p50/p99), and the lag the secondary reports;
- planned switchover under load (RUNS times, alternating direction): the longest gap between
  acknowledged writes and the switchover's own duration;
- forced failover under load (RUNS fresh deployments): the primary is cut from everything,
  the operator forces the secondary; unavailability = cut to first acknowledged write on the
  new primary; RPO = acknowledged writes missing from the new primary (each kept in the old
  primary's divergence record once it returns, which is checked).
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
import conftest  # noqa: E402,F401  (resolves *.localhost to loopback)
from geo_helpers import Geo  # noqa: E402


def pct(values, p):
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


class Load:
    """Writers at a fixed total rate, round-robin over the given nodes; bounded."""

    def __init__(self, geo, principal, nodes, rate):
        self.geo, self.nodes, self.rate = geo, nodes, rate
        self.tokens = {n.name: geo.token(n, principal) for n in geo.nodes}
        self.acked, self.lock, self.stop = [], threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(4)]

    def run(self, worker):
        period = 4.0 / self.rate
        for i in range(100_000):
            if self.stop.is_set():
                return
            started = time.monotonic()
            node = self.nodes[(worker + i) % len(self.nodes)]
            name = f"b{worker}-{i}-{int(started * 1000)}"
            try:
                r = self.geo.request(node, self.tokens[node.name], "PUT", f"/secrets/{name}", json={"value": name})
                if r.status_code == 200:
                    with self.lock:
                        self.acked.append((name, r.json()["id"].rsplit("/", 1)[1], node.name,
                                           time.monotonic(), r.headers.get("x-keystead-region-role")))
            except Exception:  # noqa: BLE001 - failures during faults are the point
                pass
            time.sleep(max(0.0, period - (time.monotonic() - started)))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def replication_lag(binary, work, latency_ms, rate, seconds=20):
    geo = Geo(binary, work / "lag", witness=False, latency_ms=latency_ms)
    try:
        geo.start()
        principal = geo.setup_vault()
        east, west = geo.node("east"), geo.node("west")
        te, tw = geo.token(east, principal), geo.token(west, principal)
        lags, reported = [], []
        pending, lock, done = [], threading.Lock(), threading.Event()

        def watcher():
            for _ in range(1_000_000):
                if done.is_set() and not pending:
                    return
                with lock:
                    batch = list(pending)
                for name, version, acked in batch:
                    r = geo.request(west, tw, "GET", f"/secrets/{name}/{version}")
                    if r.status_code == 200:
                        lags.append(time.monotonic() - acked)
                        with lock:
                            pending.remove((name, version, acked))
                time.sleep(0.002)
        w = threading.Thread(target=watcher, daemon=True)
        w.start()
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            r = geo.request(east, te, "PUT", f"/secrets/lag{i}", json={"value": str(i)})
            if r.status_code == 200:
                with lock:
                    pending.append((f"lag{i}", r.json()["id"].rsplit("/", 1)[1], time.monotonic()))
            if i % 20 == 0:
                view = geo.region_view(west)
                reported.append((view["lag_entries"], view["lag_seconds"]))
            i += 1
            time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
        done.set()
        w.join(60)
        return {
            "writes": i,
            "visible_at_secondary_ms": {"p50": round(pct(lags, 50) * 1000, 1), "p99": round(pct(lags, 99) * 1000, 1),
                                        "max": round(max(lags) * 1000, 1), "n": len(lags)},
            "reported_lag_entries_max": max(e for e, _ in reported),
            "reported_lag_seconds_max": max(s for _, s in reported),
        }
    finally:
        geo.stop()


def switchovers(binary, work, latency_ms, rate, runs):
    geo = Geo(binary, work / "switch", witness=True, latency_ms=latency_ms)
    results = []
    try:
        geo.start()
        principal = geo.setup_vault()
        with Load(geo, principal, geo.nodes, rate) as load:
            time.sleep(2)
            for run in range(runs):
                target = "west" if run % 2 == 0 else "east"
                started = time.monotonic()
                out = geo.admin("region", "switchover", "--to", target, via=geo.node(target))
                time.sleep(2)
                with load.lock:
                    times = sorted(a[3] for a in load.acked if a[3] >= started - 1)
                gap = max((b - a for a, b in zip(times, times[1:])), default=None)
                results.append({"to": target, "switchover_ms": out.get("switchover_ms"),
                                "longest_gap_ms": round(gap * 1000) if gap else None})
        # Every acknowledged write is on the final primary.
        final = geo.node("west" if runs % 2 == 1 else "east")
        token = geo.token(final, principal)
        missing = sum(1 for name, version, *_ in load.acked
                      if geo.request(final, token, "GET", f"/secrets/{name}/{version}").status_code != 200)
    finally:
        geo.stop()
    gaps = [r["longest_gap_ms"] for r in results if r["longest_gap_ms"] is not None]
    return {"runs": results, "median_gap_ms": statistics.median(gaps) if gaps else None,
            "median_switchover_ms": statistics.median(r["switchover_ms"] for r in results),
            "acknowledged": len(load.acked), "lost": missing}


def forced_failovers(binary, work, latency_ms, rate, runs):
    results = []
    for run in range(runs):
        base = work / f"forced{run}"
        geo = Geo(binary, base, witness=True, latency_ms=latency_ms, lease_ms=2000)
        try:
            geo.start()
            principal = geo.setup_vault()
            east, west = geo.node("east"), geo.node("west")
            with Load(geo, principal, [east, west], rate) as load:
                time.sleep(3)
                cut = time.monotonic()
                geo.cut("east", "west")
                geo.cut("east", "witness")
                geo.admin("region", "failover", "--to", "west", "--force", via=west)
                promoted = time.monotonic()
                failover_cli_ms = round((promoted - cut) * 1000)
                time.sleep(3)
            west_acks = [a[3] for a in load.acked if a[2] == "west-1" and a[3] > cut and a[4] == "primary"]
            window = (min(west_acks) - cut) if west_acks else None
            token = geo.token(west, principal)
            east_acked = [a for a in load.acked if a[3] <= promoted]
            missing = [(n, v) for n, v, *_ in east_acked
                       if geo.request(west, token, "GET", f"/secrets/{n}/{v}").status_code != 200]
            geo.heal()
            recorded = set()
            for _ in range(100):
                try:
                    for record in geo.admin("region", "divergence", "list", via=east):
                        shown = geo.admin("region", "divergence", "show", record["id"], via=east)
                        recorded |= {(e["object"].rsplit("/", 1)[1], e["version"]) for e in shown["entries"]}
                except AssertionError:
                    pass
                if set(missing) <= recorded:
                    break
                time.sleep(0.2)
            results.append({"unavailable_ms": round(window * 1000) if window else None,
                            "failover_command_ms": failover_cli_ms,
                            "rpo_writes": len(missing), "all_in_divergence_record": set(missing) <= recorded})
        finally:
            geo.stop()
            shutil.rmtree(base, ignore_errors=True)
    windows = [r["unavailable_ms"] for r in results if r["unavailable_ms"] is not None]
    return {"runs": results, "median_unavailable_ms": statistics.median(windows) if windows else None,
            "rpo_writes_max": max(r["rpo_writes"] for r in results)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="lag,switchover,forced")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    binary = os.environ.get("KEYSTEAD_BIN", str(ROOT / "target" / "release" / "keystead"))
    work = Path(tempfile.mkdtemp(prefix="keystead-geo-bench-"))
    try:
        report = {"latency_ms_one_way": args.latency_ms, "rate_writes_per_s": args.rate, "runs": args.runs}
        if "lag" in parts:
            report["replication_lag"] = replication_lag(binary, work, args.latency_ms, args.rate)
            print(json.dumps(report["replication_lag"]), file=sys.stderr)
        if "switchover" in parts:
            report["switchover"] = switchovers(binary, work, args.latency_ms, args.rate, args.runs)
            print(json.dumps(report["switchover"]), file=sys.stderr)
        if "forced" in parts:
            report["forced_failover"] = forced_failovers(binary, work, args.latency_ms, args.rate, args.runs)
            print(json.dumps(report["forced_failover"]), file=sys.stderr)
        report["azure_key_vault_per_seeds"] = {
            "failover": "a few minutes (Microsoft-initiated; requests fail meanwhile)",
            "data_loss": "there might be some data loss",
            "after_failover": "read-only",
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
