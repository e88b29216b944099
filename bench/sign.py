#!/usr/bin/env python3
"""Sign throughput at 32 connections: Keystead vs OpenBao transit vs raw aws-lc-rs, same run.

Called by bench/run_sign.sh once both servers are up (it passes a targets JSON file and the
raw-sign binary); prints a table and writes the results JSON. Usage:

  sign.py TARGETS.json OUT.json --raw-sign BIN [--duration 8] [--rounds 2] [--warmup 1]
          [--conns 32] [--threads 2]

Phases: RSA-2048 PS256, RSA-2048 RS256, P-256 ES256. For each phase and round three runs
go back to back, the order rotating between rounds and phases: `raw` (bench/raw-sign: aws-lc-rs
sign_digest on --threads OS threads for --duration s, key parsed once: the machine's limit),
`keystead` (POST /keys/{name}/sign, 32-byte digest) and `openbao` (POST /v1/transit/sign/{key}
with prehashed=true, hash_algorithm=sha2-256). A phase's figures pool its rounds. Once per
phase, outside the table, raw-sign also runs its `message` (sign a 32-byte message) and `parse`
(from_pkcs8 on every signature) modes for 2 s each, as context.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import subprocess
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402
import wrk_phase  # noqa: E402
from single import Keystead, OpenBao, merge, fmt, ratio, rss_kb  # noqa: E402

DIGEST = bytes(range(32))  # a fixed 32-byte "SHA-256 digest"; both servers sign it as given
PHASES = [
    # id, Keystead key + alg, OpenBao key + extra fields, raw-sign alg, signature bytes
    ("PS256", ("bench-rsa", "PS256"), ("rsa-2048", {"signature_algorithm": "pss"}), 256),
    ("RS256", ("bench-rsa", "RS256"), ("rsa-2048", {"signature_algorithm": "pkcs1v15"}), 256),
    ("ES256", ("bench-ec", "ES256"), ("ecdsa-p256", {}), 64),
]


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ub64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def setup_keystead(ks):
    for name, body in (("bench-rsa", {"kty": "RSA", "key_size": 2048}),
                       ("bench-ec", {"kty": "EC", "crv": "P-256"})):
        st, b, _ = ks.req("POST", f"/keys/{name}/create?api-version=7.6", json.dumps(body))
        if st != 200:
            raise SystemExit(f"keystead create {name}: HTTP {st}: {b[:300]!r}")


def setup_openbao(ob):
    st, b, _ = ob.req("POST", "/v1/sys/mounts/transit", json.dumps({"type": "transit"}))
    if st not in (200, 204):
        raise SystemExit(f"openbao enable transit: HTTP {st}: {b[:300]!r}")
    for name in ("rsa-2048", "ecdsa-p256"):
        st, b, _ = ob.req("POST", f"/v1/transit/keys/{name}", json.dumps({"type": name}))
        if st not in (200, 204):
            raise SystemExit(f"openbao create {name}: HTTP {st}: {b[:300]!r}")


def request_for(target, phase):
    pid_, (kname, alg), (oname, extra), _ = phase
    if target.name == "keystead":
        return (f"/keys/{kname}/sign?api-version=7.6",
                json.dumps({"alg": alg, "value": b64u(DIGEST)}))
    body = {"input": base64.b64encode(DIGEST).decode(), "prehashed": True,
            "hash_algorithm": "sha2-256"} | extra
    return f"/v1/transit/sign/{oname}", json.dumps(body)


def check_one(target, phase):
    """One sign request, untimed: HTTP 200 and a signature of the right size."""
    path, body = request_for(target, phase)
    st, b, _ = target.req("POST", path, body)
    if st != 200:
        raise SystemExit(f"{target.name} {phase[0]}: HTTP {st}: {b[:300]!r}")
    j = json.loads(b)
    if target.name == "keystead":
        sig = ub64u(j["value"])
    else:
        sig = base64.b64decode(j["data"]["signature"].split(":", 2)[2])
    want = phase[3]
    if target.name == "openbao" and want == 64:  # transit's default ECDSA marshaling is ASN.1 DER
        ok = 8 <= len(sig) <= 72 and sig[0] == 0x30
    else:
        ok = len(sig) == want
    if not ok:
        raise SystemExit(f"{target.name} {phase[0]}: signature of {len(sig)} bytes, want {phase[3]}")
    return j.get("kid") or j["data"]["signature"][:9]


def run_http(target, phase, conns, duration, max_requests, client="python"):
    path, body = request_for(target, phase)
    a = types.SimpleNamespace(
        connect_ip="127.0.0.1", port=target.port, sni=target.sni, ca=target.ca, conns=conns,
        duration=duration, max_requests=max_requests, timeout=10.0, method="POST", path=path,
        body=body, header=[f"Host: {target.sni}:{target.port}"] + target.headers,
        server_pid=[target.pid])
    if client == "wrk":
        return wrk_phase.run_many([a])[0]
    loop = loadgen.new_loop()
    try:
        return loop.run_until_complete(loadgen.run_phase(a))
    finally:
        loop.close()


def run_raw(binary, alg, duration, threads, modes="digest"):
    m0 = loadgen.machine_busy()
    p = subprocess.run([binary, "--threads", str(threads), "--duration", str(duration),
                        "--algs", alg, "--modes", modes],
                       capture_output=True, text=True, timeout=duration * 3 * len(modes.split(",")) + 120)
    m1 = loadgen.machine_busy()
    if p.returncode != 0:
        raise SystemExit(f"raw-sign failed: {p.stderr[-500:]}")
    rows = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    for r in rows:
        r["others_cores"] = round(max(0.0, (m1[0] - m0[0]) - r["cpu_s"] * len(rows))
                                  / (r["duration_s"] * len(rows)), 2)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("targets")
    ap.add_argument("out")
    ap.add_argument("--raw-sign", required=True)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-requests", type=int, default=500_000)
    ap.add_argument("--client", choices=("python", "wrk"), default="python",
                    help="load generator: loadgen.py (default) or wrk (see wrk_phase.py)")
    a = ap.parse_args()
    t = json.load(open(a.targets))
    ks, ob = Keystead(t["keystead"]), OpenBao(t["openbao"])
    tls = {x.name: x.seed() for x in (ks, ob)}
    setup_keystead(ks)
    setup_openbao(ob)
    kids = {f"{x.name} {ph[0]}": check_one(x, ph) for ph in PHASES for x in (ks, ob)}
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    client = ("wrk (1 thread)" if a.client == "wrk" else
              f"python {platform.python_version()} {'uvloop' if loadgen.uvloop else 'asyncio'}")
    print(f"# sign c{a.conns}: client {client}; raw-sign {a.threads} threads; "
          f"{a.rounds} x {a.duration:g} s per phase and system; loadavg {load0[0]:.2f}", flush=True)
    if a.warmup > 0:
        for ph in PHASES:
            for x in (ks, ob):
                run_http(x, ph, a.conns, a.warmup, a.max_requests, a.client)

    systems = ["raw", "keystead", "openbao"]
    results = {s: {} for s in systems}
    context = {}
    for i, ph in enumerate(PHASES):
        pid_ = ph[0]
        raws = {"keystead": [], "openbao": []}
        runs = {s: [] for s in systems}
        for rnd in range(a.rounds):
            k = (i + rnd) % 3
            order = systems[k:] + systems[:k]
            for s in order:
                if s == "raw":
                    r = run_raw(a.raw_sign, pid_, a.duration, a.threads)[0]
                    runs["raw"].append(r | {"round": rnd + 1})
                    print(f"{pid_} r{rnd + 1} raw      {fmt(r['ops_per_s'], 1):>9} sign/s"
                          f"  cpu {r['cpu_us_per_op']:.0f} us/sign  others {r['others_cores']:.2f} cores",
                          flush=True)
                    continue
                x = ks if s == "keystead" else ob
                raw = run_http(x, ph, a.conns, a.duration, a.max_requests, a.client)
                raws[s].append(raw)
                r = loadgen.summarize(raw, a.conns)
                errs = r["non2xx"] + sum(r["transport_errors"].values())
                runs[s].append({k2: r[k2] for k2 in (
                    "rps", "p50_ms", "p99_ms", "server_cpu_us_per_req", "server_cores",
                    "client_cores", "other_procs_cores", "requests", "non2xx")}
                    | {"round": rnd + 1, "errors": r["transport_errors"]})
                print(f"{pid_} r{rnd + 1} {s:8} {fmt(r['rps'], 1):>9} sign/s  p50 {fmt(r['p50_ms'], 2):>7} ms"
                      f"  p99 {fmt(r['p99_ms'], 2):>7} ms  srv {fmt(r['server_cpu_us_per_req'])} us/req"
                      f"  cores srv/cli/others {r['server_cores']:.2f}/{r['client_cores']:.2f}/"
                      f"{r['other_procs_cores']:.2f}  errors {errs}", flush=True)
                for smp in r["error_samples"]:
                    print(f"    ! {smp}", flush=True)
        rr = runs["raw"]
        results["raw"][pid_] = {
            "ops_per_s": round(sum(r["ops"] for r in rr) / sum(r["duration_s"] for r in rr), 1),
            "cpu_us_per_op": round(1e6 * sum(r["cpu_s"] for r in rr) / sum(r["ops"] for r in rr), 1),
            "runs": rr}
        for s in ("keystead", "openbao"):
            results[s][pid_] = loadgen.summarize(merge(raws[s]), a.conns) | {"runs": runs[s]}
        context[pid_] = run_raw(a.raw_sign, pid_, 2, a.threads, "message,parse")
        for r in context[pid_]:
            print(f"{pid_} context raw-sign mode={r['mode']:7} {fmt(r['ops_per_s'], 1):>9} sign/s"
                  f"  cpu {r['cpu_us_per_op']:.0f} us/sign", flush=True)

    rss = {x.name: rss_kb(x.pid) for x in (ks, ob)}
    ratios = {}
    rows = []
    for ph in PHASES:
        p = ph[0]
        R, K, O = results["raw"][p], results["keystead"][p], results["openbao"][p]
        ratios[p] = {
            "keystead_over_raw": ratio(K["rps"], R["ops_per_s"]),
            "keystead_over_openbao": ratio(K["rps"], O["rps"]),
            "openbao_over_raw": ratio(O["rps"], R["ops_per_s"]),
            "raw_cpu_over_keystead_cpu": ratio(R["cpu_us_per_op"], K["server_cpu_us_per_req"]),
            "raw_cpu_over_openbao_cpu": ratio(R["cpu_us_per_op"], O["server_cpu_us_per_req"]),
            "target_keystead_ge_80pct_raw": (K["rps"] or 0) >= 0.8 * R["ops_per_s"],
            "target_keystead_ge_2x_openbao": (K["rps"] or 0) >= 2 * (O["rps"] or 1e-9),
        }
        q = ratios[p]
        ke = K["non2xx"] + sum(K["transport_errors"].values())
        oe = O["non2xx"] + sum(O["transport_errors"].values())
        rows.append((f"{p} c{a.conns}", fmt(R["ops_per_s"]), fmt(K["rps"]), fmt(O["rps"]),
                     f"{q['keystead_over_raw'] * 100:.0f} %", f"{q['keystead_over_openbao']:.2f}x",
                     f"{R['cpu_us_per_op']:.0f} / {fmt(K['server_cpu_us_per_req'])} / "
                     f"{fmt(O['server_cpu_us_per_req'])}",
                     f"{fmt(K['p50_ms'], 1)}/{fmt(K['p99_ms'], 1)} vs {fmt(O['p50_ms'], 1)}/{fmt(O['p99_ms'], 1)}",
                     f"{ke}/{K['requests']}, {oe}/{O['requests']}"))
    head = ("phase", "raw/s", "Keystead/s", "OpenBao/s", "K/raw", "K/O",
            "CPU us/sign raw/K/O", "p50/p99 ms K vs O", "errors K, O")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(r[i].ljust(w[i]) if i == 0 else r[i].rjust(w[i])
                                       for i in range(len(head))) + " |"
    print()
    print(line(head))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line(r))
    for p, q in ratios.items():
        print(f"{p}: Keystead = {q['keystead_over_raw'] * 100:.1f} % of raw (target >= 80 %: "
              f"{'met' if q['target_keystead_ge_80pct_raw'] else 'NOT met'}), "
              f"{q['keystead_over_openbao']:.2f}x OpenBao (target >= 2x: "
              f"{'met' if q['target_keystead_ge_2x_openbao'] else 'NOT met'}); "
              f"CPU per sign: raw/Keystead {q['raw_cpu_over_keystead_cpu']:.2f}, "
              f"raw/OpenBao {q['raw_cpu_over_openbao_cpu']:.2f}")

    out = {
        "benchmark": "sign throughput at c32: Keystead vs OpenBao transit vs raw aws-lc-rs, same run",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"duration_s": a.duration, "rounds": a.rounds, "warmup_s": a.warmup,
                     "conns": a.conns, "raw_threads": a.threads, "client": client,
                     "max_requests": a.max_requests,
                     "digest_hex": DIGEST.hex(),
                     "order": "per phase and round raw, keystead, openbao back to back, rotating "
                              "the starting system; per-phase figures pool all rounds"},
        "machine": {"nproc": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                    "kernel": platform.release(), "python": platform.python_version(),
                    "event_loop": "uvloop" if loadgen.uvloop else "asyncio"},
        "servers": {"keystead": {**t["keystead"], "tls": tls["keystead"]},
                    "openbao": {k: v for k, v in t["openbao"].items() if k != "token"}
                    | {"tls": tls["openbao"]}},
        "signing_keys": kids,
        "results": results,
        "raw_context_modes": context,
        "ratios": ratios,
        "rss_kb_end": rss,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.out)
    print(f"\nresults: {a.out}")


if __name__ == "__main__":
    main()
