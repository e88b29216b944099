#!/usr/bin/env python3
"""Closed-loop HTTPS/1.1 keep-alive load generator (asyncio, uvloop if installed).

Used by bench/single.py; can also be run alone for one phase:

  loadgen.py --port 18443 --sni demo.vault.localhost --ca CA.pem --conns 8 --duration 10 \
      --method PUT --path '/secrets/b-{c}-{n}?api-version=7.6' --body '{"value":"x"}' \
      --header 'Host: demo.vault.localhost:18443' --header 'Authorization: Bearer ...'

Every connection is a TCP connection to --connect-ip (default 127.0.0.1) with TLS SNI and
certificate check against --sni, so names such as demo.vault.localhost need no resolver.
`{c}` and `{n}` in --path are replaced per request by the connection number and that
connection's request counter (unique names for writes). Each connection sends one request,
waits for the whole response, records its latency, and sends the next one.

Bounds: the phase stops sending at --duration seconds or after --max-requests requests
(all connections together), whichever comes first; a request still in flight gets at most
--timeout more seconds; then everything is cancelled. A failed connection is counted and
reopened after 50 ms, inside the same deadline.
Prints one JSON object (see `summarize`).
"""
import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time

try:
    import uvloop  # type: ignore
except ImportError:  # pragma: no cover - plain asyncio works, just slower
    uvloop = None


def cpu_ticks(pids):
    """utime+stime of the given PIDs (seconds), 0 for PIDs that are gone."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # fields[0] is state (field 3); utime/stime are fields 14/15 -> index 11/12;
            # cutime/cstime (15/16 -> 13/14) add reaped children (none for these servers)
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tck


def machine_busy():
    """(busy seconds, total seconds) over all CPUs from /proc/stat."""
    tck = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return (total - idle) / tck, total / tck


def client_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.waiter = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        w = self.waiter
        if w is not None and not w.done():
            res = self._parse()
            if res is not None:
                self.waiter = None
                w.set_result(res)

    def connection_lost(self, exc):
        self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(ConnectionError(f"connection closed without response ({exc})"))

    def _parse(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buf[:end])
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        clen = None
        chunked = False
        close = False
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                clen = int(v.strip())
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
            elif k == b"connection" and b"close" in v.lower():
                close = True
        start = end + 4
        if chunked:
            body = bytearray()
            pos = start
            while True:
                nl = self.buf.find(b"\r\n", pos)
                if nl < 0:
                    return None
                size = int(bytes(self.buf[pos:nl]).split(b";")[0], 16)
                if size == 0:
                    fin = self.buf.find(b"\r\n\r\n", nl)
                    if fin < 0:
                        return None
                    del self.buf[:fin + 4]
                    return status, bytes(body), close
                if len(self.buf) < nl + 2 + size + 2:
                    return None
                body += self.buf[nl + 2:nl + 2 + size]
                pos = nl + 2 + size + 2
        clen = clen or 0
        if len(self.buf) < start + clen:
            return None
        body = bytes(self.buf[start:start + clen])
        del self.buf[:start + clen]
        return status, body, close

    def request(self, data):
        if self.closed:
            raise ConnectionError("connection already closed")
        fut = asyncio.get_running_loop().create_future()
        self.waiter = fut
        self.transport.write(data)
        return fut


def make_ssl_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def open_conn(ip, port, ctx, sni):
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(HttpConn, ip, port, ssl=ctx, server_hostname=sni)
    return proto


def build_request(method, path, headers, body):
    h = [f"{method} {path} HTTP/1.1"]
    h += [f"{k}: {v}" for k, v in headers]
    if body is not None:
        h.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(h) + "\r\n\r\n").encode() + (body or b"")


async def run_phase(a):
    """Runs one bounded phase and returns the raw result dict."""
    ctx = make_ssl_context(a.ca)
    body = a.body.encode() if a.body is not None else None
    headers = [tuple(x.split(":", 1)) for x in a.header]
    headers = [(k.strip(), v.strip()) for k, v in headers]
    unique = "{n}" in a.path or "{c}" in a.path
    fixed = None if unique else build_request(a.method, a.path, headers, body)
    lat = []
    status_counts = {}
    samples = []
    errors = {}
    sent = [0]
    ok_names = []  # a few (path) of acknowledged unique writes, for read-back checks
    t_start = time.perf_counter()
    t_stop = t_start + a.duration

    def err(kind, msg):
        errors[kind] = errors.get(kind, 0) + 1
        if len(samples) < 5:
            samples.append(f"{kind}: {msg[:300]}")

    async def worker(c):
        n = 0
        conn = None
        while True:
            now = time.perf_counter()
            if now >= t_stop or sent[0] >= a.max_requests:
                break
            if conn is None or conn.closed:
                try:
                    conn = await open_conn(a.connect_ip, a.port, ctx, a.sni)
                except (OSError, ssl.SSLError) as e:
                    err("connect", repr(e))
                    await asyncio.sleep(0.05)
                    continue
            n += 1
            sent[0] += 1
            if unique:
                path = a.path.replace("{c}", str(c)).replace("{n}", str(n))
                data = build_request(a.method, path, headers, body)
            else:
                path = a.path
                data = fixed
            t0 = time.perf_counter()
            try:
                status, rbody, close = await conn.request(data)
            except (OSError, ConnectionError, ssl.SSLError) as e:
                err("read", repr(e))
                conn = None
                await asyncio.sleep(0.05)
                continue
            dt = time.perf_counter() - t0
            status_counts[status] = status_counts.get(status, 0) + 1
            if 200 <= status < 300:
                lat.append(dt)
                if unique and len(ok_names) < 200 and n % 7 == 1:
                    ok_names.append(path)
            else:
                if len(samples) < 5:
                    samples.append(f"HTTP {status}: {rbody[:300].decode('utf-8', 'replace')}")
            if close:
                conn.transport.close()
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    srv0 = cpu_ticks(a.server_pid)
    cl0 = client_cpu()
    m0 = machine_busy()
    tasks = [asyncio.ensure_future(worker(c)) for c in range(a.conns)]
    done, pending = await asyncio.wait(tasks, timeout=a.duration + a.timeout)
    for t in pending:
        t.cancel()
        errors["timeout"] = errors.get("timeout", 0) + 1
    for t in done:
        if t.exception() is not None:
            err("worker", repr(t.exception()))
    elapsed = time.perf_counter() - t_start
    srv = cpu_ticks(a.server_pid) - srv0
    cl = client_cpu() - cl0
    m1 = machine_busy()
    await asyncio.sleep(0.05)  # let the closes go out
    busy = m1[0] - m0[0]
    return {
        "lat": lat, "status_counts": status_counts, "errors": errors, "samples": samples,
        "elapsed_s": elapsed, "server_cpu_s": srv, "client_cpu_s": cl,
        "machine_busy_cpu_s": busy, "ok_paths": ok_names,
    }


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize(raw, conns):
    lat = sorted(raw["lat"])
    ok = len(lat)
    total = sum(raw["status_counts"].values())
    el = raw["elapsed_s"]
    ms = lambda v: None if v is None else round(v * 1000, 3)
    other = raw["machine_busy_cpu_s"] - raw["server_cpu_s"] - raw["client_cpu_s"]
    return {
        "conns": conns,
        "duration_s": round(el, 3),
        "requests": total,
        "ok": ok,
        "non2xx": total - ok,
        "status_counts": {str(k): v for k, v in sorted(raw["status_counts"].items())},
        "transport_errors": raw["errors"],
        "error_samples": raw["samples"],
        "rps": round(ok / el, 1) if el > 0 else None,
        "p50_ms": ms(pct(lat, 50)), "p90_ms": ms(pct(lat, 90)), "p99_ms": ms(pct(lat, 99)),
        "max_ms": ms(lat[-1] if lat else None),
        "mean_ms": ms(sum(lat) / ok if ok else None),
        "server_cpu_s": round(raw["server_cpu_s"], 2),
        "server_cpu_us_per_req": round(1e6 * raw["server_cpu_s"] / ok) if ok else None,
        "server_cores": round(raw["server_cpu_s"] / el, 2) if el > 0 else None,
        "client_cpu_us_per_req": round(1e6 * raw["client_cpu_s"] / ok) if ok else None,
        "client_cores": round(raw["client_cpu_s"] / el, 2) if el > 0 else None,
        "other_procs_cores": round(max(0.0, other) / el, 2) if el > 0 else None,
    }


def new_loop():
    if uvloop is not None:
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connect-ip", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", required=True, help="TLS server name (and certificate name checked)")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=2_000_000)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--method", default="GET")
    ap.add_argument("--path", required=True)
    ap.add_argument("--body")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--server-pid", type=int, action="append", default=[])
    a = ap.parse_args()
    if not any(h.lower().startswith("host:") for h in a.header):
        a.header.insert(0, f"Host: {a.sni}:{a.port}")
    loop = new_loop()
    try:
        raw = loop.run_until_complete(run_phase(a))
    finally:
        loop.close()
    out = summarize(raw, a.conns)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
