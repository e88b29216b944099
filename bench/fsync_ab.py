#!/usr/bin/env python3
"""A/B check of two Keystead binaries on secret writes: throughput and fsyncs per write.

  bench/.venv/bin/python bench/fsync_ab.py BIN_A BIN_B [--duration 5] [--rounds 2]
      [--conns 1,8] [--no-strace]

Starts `BIN dev` for each binary (own data dir under $AB_WORK, default /tmp/keystead-bench/ab,
wiped first; ports 18543 and 18544 on 127.0.0.1), then for each round and each of write c1 and
write c8 runs, per binary, in alternating order: one plain phase (req/s, p50/p99), then one
phase with `strace -f -c -e trace=fdatasync,fsync` attached to the server (fsync calls per
acknowledged write; strace slows the server, so that phase's req/s is not reported; skipped
with --no-strace). Servers
and strace are stopped by PID. Needs strace and the bench venv (uvloop optional).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import loadgen  # noqa: E402
import single  # noqa: E402


def start(binary, work, port):
    data = os.path.join(work, f"ks-{port}")
    log = open(os.path.join(work, f"ks-{port}.log"), "w")
    proc = subprocess.Popen([binary, "dev", "--data-dir", data, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    cred = os.path.join(data, "dev-credentials.json")
    for _ in range(600):
        if os.path.exists(cred) and os.path.getsize(cred) > 0:
            break
        time.sleep(0.05)
    for _ in range(600):
        try:
            target = single.Keystead({"credentials": cred, "port": port, "pid": proc.pid})
            target.seed()
            return proc, target
        except Exception:  # listener not up yet
            time.sleep(0.1)
    raise SystemExit(f"{binary} did not come up on {port}")


def phase(target, conns, duration, prefix):
    raw = single.run_raw(target, "write", conns, duration, prefix, 500_000)
    return loadgen.summarize(raw, conns)


def fsyncs(target, conns, duration, prefix, work):
    out = os.path.join(work, f"strace-{target.port}-{prefix}.txt")
    st = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=fdatasync,fsync", "-o", out,
                           "-p", str(target.pid)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let strace attach to every thread
    s = phase(target, conns, duration, prefix)
    st.send_signal(signal.SIGINT)
    st.wait(timeout=30)
    calls = 0
    for line in open(out):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fdatasync|fsync)\s*$", line)
        if m:
            calls += int(m.group(1))
    return calls, s["ok"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", default="1,8")
    ap.add_argument("--no-strace", action="store_true")
    args = ap.parse_args()
    work = os.environ.get("AB_WORK", "/tmp/keystead-bench/ab")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    procs = []
    try:
        targets = {}
        for label, binary, port in (("A", args.a, 18543), ("B", args.b, 18544)):
            proc, target = start(binary, work, port)
            procs.append(proc)
            targets[label] = target
        results = []
        for r in range(args.rounds):
            order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
            for conns in [int(c) for c in args.conns.split(",")]:
                for label in order:
                    t = targets[label]
                    s = phase(t, conns, args.duration, f"ab{r}c{conns}")
                    calls, ok = (0, 0) if args.no_strace else \
                        fsyncs(t, conns, args.duration, f"ab{r}c{conns}s", work)
                    row = {"round": r + 1, "bin": label, "conns": conns, "rps": s["rps"],
                           "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
                           "errors": s["non2xx"] + sum(s["transport_errors"].values()),
                           "server_us_per_req": s["server_cpu_us_per_req"],
                           "others_cores": s["other_procs_cores"],
                           "fsync_calls": calls, "writes_traced": ok,
                           "fsync_per_write": round(calls / ok, 3) if ok else None}
                    results.append(row)
                    print(json.dumps(row), flush=True)
        print(json.dumps({"a": args.a, "b": args.b, "results": results}))
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
