#!/usr/bin/env python3
"""The same bounded closed-loop phase as loadgen.run_phase, driven by wrk instead of Python.

Why a second client: loadgen.py is one Python process on the same 2 cores as the servers, and
costs 40-100 us of CPU per request. When a server is CPU-bound that share comes out of the
server's throughput, and it compresses every ratio towards 1 (the cheaper server loses more).
wrk (C, epoll; Debian package `wrk`, also what shared/reference/openbao-baseline.md used) costs
a fraction of that. The harnesses take `--client wrk` to use it; results say which client ran.

`run_many(args)` runs one wrk process per argument set, all at once, and returns raw results
in loadgen's shape, so `loadgen.summarize` and `single.merge` work on them unchanged:

- wrk connects to 127.0.0.1 with TLS but does not verify the certificate (it never does) and
  sends `Host` from the headers; the servers choose the vault by `Host`, not by SNI.
- Latency: wrk keeps a histogram, not samples. `done()` prints 1,000 quantiles, and `lat` is
  rebuilt from them with one entry per successful request (so `len(lat)` is the success count
  and pooled percentiles stay right to within a tenth of a percentile).
- Status: wrk counts non-2xx/3xx answers (`errors.status`) but not by code; they are reported
  under the key "non-2xx". Transport errors (connect, read, write, timeout) are kept by kind.
- Bounds: `-d` duration and `--timeout`; the process is killed if it overruns by 30 s.
  `max_requests` is not enforced by wrk (its phases are short and time-bounded).
- CPU: the servers' utime+stime as in loadgen; the client's from RUSAGE_CHILDREN around the
  wrk processes; all figures land in the first result, as loadgen does for concurrent runs.
- `{c}`/`{n}` in a path (unique names for writes) become the wrk thread's connection-agnostic
  counter: `t<thread>-<n>`; `ok_paths` stays empty, so write phases run with wrk have no
  read-back check: use the Python client for those.
"""
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time

import loadgen

LUA = r"""
local method, body, path, unique = %(method)s, %(body)s, %(path)s, %(unique)s
wrk.method = method
if body ~= nil then wrk.body = body end
%(headers)s
local counter = 0
local next_tid = 0
tid = 0  -- a global: thread:set() below gives each thread's copy its own number
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
function request()
  if not unique then return wrk.format(nil, path) end
  counter = counter + 1
  local p = path:gsub("{c}", "t" .. tostring(tid)):gsub("{n}", tostring(counter))
  return wrk.format(nil, p)
end
function done(summary, latency, requests)
  local q = {}
  for i = 0, 999 do q[#q + 1] = string.format("%%d", latency:percentile((i + 0.5) / 10)) end
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "status": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "quantiles_us": [%%s]}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, table.concat(q, ",")))
end
"""


def lua_str(s):
    return "nil" if s is None else json.dumps(s)  # a JSON string literal is a valid Lua string


def script_for(a):
    headers = [tuple(x.split(":", 1)) for x in a.header]
    lines = [f"wrk.headers[{lua_str(k.strip())}] = {lua_str(v.strip())}" for k, v in headers]
    if a.body is not None:
        lines.append('wrk.headers["Content-Type"] = wrk.headers["Content-Type"] or "application/json"')
    unique = "{n}" in a.path or "{c}" in a.path
    return LUA % {"method": lua_str(a.method), "body": lua_str(a.body), "path": lua_str(a.path),
                  "unique": "true" if unique else "false", "headers": "\n".join(lines)}


def wrk_binary():
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk not found: apt-get install -y wrk (or run with --client python)")
    return path


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def to_raw(out, a, elapsed):
    s = json.loads(out.strip().splitlines()[-1])
    ok = s["requests"] - s["status"]
    q = [x / 1e6 for x in s["quantiles_us"]]
    lat = [q[min(len(q) - 1, i * len(q) // ok)] for i in range(ok)] if ok > 0 else []
    errors = {k: s[k] for k in ("connect", "read", "write", "timeout") if s[k]}
    return {
        "lat": lat, "status_counts": {"2xx/3xx": ok} | ({"non-2xx": s["status"]} if s["status"] else {}),
        "errors": errors, "samples": [], "elapsed_s": s["duration_us"] / 1e6 or elapsed,
        "server_cpu_s": 0.0, "client_cpu_s": 0.0, "machine_busy_cpu_s": 0.0, "ok_paths": [],
    }


def run_many(args):
    """Runs one wrk per argument set concurrently; returns their raw results (CPU in the first)."""
    wrk = wrk_binary()
    with tempfile.TemporaryDirectory(prefix="wrk-phase-") as tmp:
        cmds = []
        for i, a in enumerate(args):
            script = os.path.join(tmp, f"phase-{i}.lua")
            with open(script, "w") as f:
                f.write(script_for(a))
            conns = max(1, a.conns)
            cmds.append([wrk, "-t1", f"-c{conns}", f"-d{a.duration:g}s", f"--timeout={a.timeout:g}s",
                         "-s", script, f"https://{a.connect_ip}:{a.port}/"])
        pids = sorted({p for a in args for p in a.server_pid})
        srv0, cl0, m0 = loadgen.cpu_ticks(pids), children_cpu(), loadgen.machine_busy()
        t0 = time.perf_counter()
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c in cmds]
        outs = []
        for a, p in zip(args, procs):
            try:
                out, err = p.communicate(timeout=a.duration + a.timeout + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            if p.returncode != 0 or not out.strip():
                raise SystemExit(f"wrk failed (rc {p.returncode}): {err[-500:]}")
            outs.append(out)
        elapsed = time.perf_counter() - t0
        srv, cl, m1 = loadgen.cpu_ticks(pids) - srv0, children_cpu() - cl0, loadgen.machine_busy()
    raws = [to_raw(out, a, elapsed) for out, a in zip(outs, args)]
    raws[0].update(server_cpu_s=srv, client_cpu_s=cl, machine_busy_cpu_s=m1[0] - m0[0])
    return raws
