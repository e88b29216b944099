#!/usr/bin/env bash
# A/B of two Keystead builds (or one build under two environments) on 3-node cluster secret
# writes at one client: the lever issue #4's write-p50 target turns on. No OpenBao; compare the
# two sides of one run only (docs/benchmarks.md).
#
#   bench/cluster_ab.sh BIN_A BIN_B [ROUNDS] [DURATION_S] [CONNS]     (defaults: 4, 8, 1)
#
# Each round starts a fresh cluster per side (`cluster init`, 3 x `serve`, join, vault,
# principal), in alternating order (A,B then B,A ...), runs bench/loadgen.py against the leader
# for DURATION_S, prints p50/p99 and throughput, and stops the nodes by PID. A_ENV / B_ENV are
# extra `VAR=value ...` assignments for that side's servers (e.g. B_ENV="TOKIO_WORKER_THREADS=1"),
# A_ENV1 / B_ENV1 for node 1 only (the bootstrap node, which leads unless an election moved it).
# PERF_DATA=FILE records `perf record -a -g` (DWARF call graphs) for the middle of each phase,
# into FILE.<round>-<side>. Work dir: $BENCH_WORK (default /tmp/keystead-bench/ab-cluster, wiped per start).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
A="$1"; B="$2"; ROUNDS="${3:-4}"; DUR="${4:-8}"; CONNS="${5:-1}"
WORK="${BENCH_WORK:-/tmp/keystead-bench/ab-cluster}"
API=18841; CL=19841
VENV="$HERE/.venv"; PY="$VENV/bin/python"
log() { echo "[cluster_ab] $*" >&2; }
source "$HERE/lib.sh"
bench_tools

PIDS=()
stop_all() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; PIDS=(); }
trap stop_all EXIT

# ab_start I CONFIG LOG: node I of the side being started, under START_ENV (and START_ENV1 on node 1)
ab_start() {
  local e="$START_ENV"
  [ "$1" = 1 ] && e="$START_ENV $START_ENV1"
  # shellcheck disable=SC2086
  setsid env $e "$BIN" serve --config "$2" >"$3" 2>&1 </dev/null &
  PIDS+=($!)
}

# start BIN ENV ENV1: a fresh 3-node cluster; sets LEADER_PORT and TOKEN
start() {
  local bin="$1" envs="$2" env1="$3" d
  BIN="$bin"
  rm -rf "$WORK"; mkdir -p "$WORK"
  START_ENV="$envs"; START_ENV1="$env1"
  keystead_cluster3 "$bin" "$WORK/ks" $API $CL ab_start
  d="$WORK/ks/node-1/data"
  LEADER_PORT=$((API + $("$bin" cluster status --data-dir "$d" | "$PY" -c 'import json,sys;print(json.load(sys.stdin)["leader"])') - 1))
  TOKEN=$("$PY" - "$WORK/ks/principal.json" "$LEADER_PORT" "$WORK/ks/ca.pem" <<'EOF'
import json, ssl, sys, urllib.parse, urllib.request
p = json.load(open(sys.argv[1])); port = sys.argv[2]
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": p["client_id"],
    "client_secret": p["client_secret"], "scope": f"https://vault.localhost:{port}/.default"})
req = urllib.request.Request(f"https://localhost:{port}/{p['tenant_id']}/oauth2/v2.0/token",
                             form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
ctx = ssl.create_default_context(cafile=sys.argv[3])
print(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["access_token"])
EOF
)
}

# measure LABEL: one loadgen phase against the leader
measure() {
  local label="$1" pid_args=() p
  for p in "${PIDS[@]}"; do pid_args+=(--server-pid "$p"); done
  if [ -n "${PERF_DATA:-}" ]; then
    (sleep 1; perf record -q -F 499 -a --call-graph dwarf,32768 -o "$PERF_DATA.${label// /-}" \
       -- sleep $((DUR - 2)) >/dev/null 2>&1) &
  fi
  "$PY" "$HERE/loadgen.py" --port "$LEADER_PORT" --sni demo.vault.localhost --ca "$WORK/ks/ca.pem" \
    --conns "$CONNS" --duration "$DUR" --method PUT --path "/secrets/ab-{c}-{n}?api-version=7.6" \
    --body '{"value":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"}' \
    --header "Host: demo.vault.localhost:$LEADER_PORT" --header "Authorization: Bearer $TOKEN" \
    --header "Content-Type: application/json" "${pid_args[@]}" |
    LABEL="$label" "$PY" -c 'import json, os, sys
r = json.load(sys.stdin)
print("%s p50 %.3f ms  p99 %.2f ms  %.0f req/s  srv %s us/req  non-2xx %d  transport errors %d" % (
    os.environ["LABEL"], r["p50_ms"], r["p99_ms"], r["rps"], r["server_cpu_us_per_req"],
    r["non2xx"], sum(r["transport_errors"].values())))'
  # Node 1's early appends (`early_append.rs`), on builds that count them.
  "$BIN" cluster status --data-dir "$WORK/ks/node-1/data" | "$PY" -c 'import json, sys
e = json.load(sys.stdin).get("early_appends")
if e: print("    node 1 early appends: %(accepted)d accepted, %(refused)d refused, %(failed)d failed, %(skipped)d skipped" % e)'
}

for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for side in $order; do
    if [ "$side" = A ]; then start "$A" "${A_ENV:-}" "${A_ENV1:-}"; else start "$B" "${B_ENV:-}" "${B_ENV1:-}"; fi
    measure "round $r $side (leader :$LEADER_PORT)"
    stop_all
  done
done
