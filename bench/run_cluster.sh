#!/usr/bin/env bash
# 3-node cluster benchmark, Keystead vs OpenBao, in one run on this machine (docs/benchmarks.md).
#
#   bench/run_cluster.sh [DURATION_S] [ROUNDS] [KILLS]        (defaults: 6, 2, 5)
#
# Starts a 3-node Keystead cluster (`keystead cluster init` + 3 x `keystead serve` + join) and
# a 3-node OpenBao 2.7.2 raft cluster (retry_join, TLS with a self-signed P-256 cert, static
# auto-unseal, as in shared/bench/openbao/cluster3.sh), all on 127.0.0.1, data under the same
# directory ($BENCH_WORK, default /tmp/keystead-bench/cluster, wiped first). Then
# bench/cluster.py measures, for both clusters in the same run: secret write c1/c8 to the
# leader, write c8 through a follower, read c32 over all 3 nodes, and KILLS leader kill -9
# failovers each (write unavailability, read errors), and writes
# bench/results/cluster-<UTC date-time>.json. Every server is stopped by PID on exit (trap).
# Whole run: about 5 minutes at the defaults.
#
# Environment: KEYSTEAD_BIN (default target/release/keystead; rebuilt with cargo if missing or
# older than crates/, unless KEYSTEAD_NO_BUILD=1; copied into $BENCH_WORK so that restarts use
# the same binary), BENCH_WORK, KS_API_BASE (18741), KS_CLUSTER_BASE (19741), BAO_BASE (18710:
# nodes on 18710/18720/18730, cluster port +1), BAO_PERF_MULT (raft performance_multiplier,
# default 0 = OpenBao's default), KS_HEARTBEAT_MS / KS_ELECTION_MS ("200,400"): override
# Keystead's raft timing (default: the generated configs' defaults, 50 ms and 200-400 ms),
# BENCH_CLIENT (python, the default, or wrk for the read phase: see bench/wrk_phase.py).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DUR="${1:-6}"; ROUNDS="${2:-2}"; KILLS="${3:-5}"
WORK="${BENCH_WORK:-/tmp/keystead-bench/cluster}"
KS_API_BASE="${KS_API_BASE:-18741}"; KS_CLUSTER_BASE="${KS_CLUSTER_BASE:-19741}"
BAO_BASE="${BAO_BASE:-18710}"; BAO_PM="${BAO_PERF_MULT:-0}"
KEYSTEAD_BIN="${KEYSTEAD_BIN:-$ROOT/target/release/keystead}"; KS_STALE=0
VENV="$HERE/.venv"; PY="$VENV/bin/python"
OUT="$HERE/results/cluster-$(date -u +%Y%m%d-%H%M%S).json"

log() { echo "[run_cluster] $*" >&2; }

# --- tools, binary, helpers (bench/lib.sh) ----------------------------------------------
source "$HERE/lib.sh"
bench_tools
bench_keystead_binary
"$KEYSTEAD_BIN" cluster --help >/dev/null 2>&1 || { log "$KEYSTEAD_BIN has no 'cluster' command"; exit 1; }

KS_PORTS=(); KS_CPORTS=(); BAO_PORTS=()
for i in 0 1 2; do
  KS_PORTS+=($((KS_API_BASE+i))); KS_CPORTS+=($((KS_CLUSTER_BASE+i))); BAO_PORTS+=($((BAO_BASE+10*i)))
done
ports_free "${KS_PORTS[@]}" "${KS_CPORTS[@]}" "${BAO_PORTS[@]}" $(for b in "${BAO_PORTS[@]}"; do echo $((b+1)); done)

# --- processes: every server's PID is in $WORK/pids/<name>; cluster.py rewrites the file when
# it restarts a node and removes it before a kill -9. The trap stops exactly these PIDs.
cleanup() {
  local rc=$? f
  for f in "$WORK"/pids/*; do [ -f "$f" ] && stop_pid "$(cat "$f")"; done
  [ $rc -eq 0 ] || log "failed (rc=$rc); server logs: $WORK/keystead/node-*.log $WORK/openbao/n*/server.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"; mkdir -p "$WORK/pids" "$WORK/openbao/certs"
log "work dir $WORK ($(df -P "$WORK" | awk 'NR==2{print $1}'))"
cp "$KEYSTEAD_BIN" "$WORK/keystead-bin"; KS="$WORK/keystead-bin"

start_bg() {  # NAME LOG CMD...: start in its own session, record the PID
  local name="$1" logf="$2"; shift 2
  setsid "$@" >>"$logf" 2>&1 </dev/null &
  echo $! >"$WORK/pids/$name"
  disown $!  # no "Killed" job notices after the kill -9s
}

# --- OpenBao: 3 raft nodes, retry_join, TLS, static seal (as cluster3.sh) -------------------
C="$WORK/openbao/certs"
openbao_certs "$C"
for i in 0 1 2; do
  d="$WORK/openbao/n$((i+1))"; p=${BAO_PORTS[$i]}; mkdir -p "$d/data"
  {
    echo "ui = false"; echo "disable_mlock = true"; echo 'log_level = "info"'
    echo "api_addr = \"https://127.0.0.1:$p\""; echo "cluster_addr = \"https://127.0.0.1:$((p+1))\""
    echo "storage \"raft\" {"; echo "  path = \"$d/data\""; echo "  node_id = \"n$((i+1))\""
    [ "$BAO_PM" != 0 ] && echo "  performance_multiplier = $BAO_PM"
    for j in 0 1 2; do
      [ $j -eq $i ] && continue
      echo "  retry_join {"; echo "    leader_api_addr = \"https://127.0.0.1:${BAO_PORTS[$j]}\""
      echo "    leader_ca_cert_file = \"$C/tls.crt\""; echo "  }"
    done
    echo "}"
    echo "listener \"tcp\" {"; echo "  address = \"127.0.0.1:$p\""
    echo "  cluster_address = \"127.0.0.1:$((p+1))\""
    echo "  tls_cert_file = \"$C/tls.crt\""; echo "  tls_key_file = \"$C/tls.key\""; echo "}"
    echo "seal \"static\" {"; echo '  current_key_id = "bench-1"'
    echo "  current_key = \"file://$C/seal.key\""; echo "}"
  } >"$d/config.hcl"
done
BAO_URL="https://127.0.0.1:${BAO_PORTS[0]}"
start_bg bao-n1 "$WORK/openbao/n1/server.log" "$BAO" server -config="$WORK/openbao/n1/config.hcl"
wait_http "$BAO_URL/v1/sys/health" "$C/tls.crt" 501 60           # up, not initialised
BAO_ADDR="$BAO_URL" BAO_CACERT="$C/tls.crt" "$BAO" operator init -format=json \
  -recovery-shares=1 -recovery-threshold=1 >"$WORK/openbao/init.json"
BAO_TOKEN=$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['root_token'])" "$WORK/openbao/init.json")
wait_http "$BAO_URL/v1/sys/health" "$C/tls.crt" 200 60           # unsealed, active
for i in 2 3; do
  start_bg "bao-n$i" "$WORK/openbao/n$i/server.log" "$BAO" server -config="$WORK/openbao/n$i/config.hcl"
done
bao_cli() { BAO_ADDR="$BAO_URL" BAO_CACERT="$C/tls.crt" BAO_TOKEN="$BAO_TOKEN" "$BAO" "$@"; }
bao_cli secrets enable -version=2 -path=secret kv >/dev/null
log "openbao n1 active; n2, n3 joining (autopilot promotes them after its stabilization time)"

# --- Keystead: cluster init, 3 x serve, join, vault + principal -------------------------------
K="$WORK/keystead"; KD="$K/node-1/data"
ks_start() { start_bg "ks-n$1" "$3" "$KS" serve --config "$2"; }
KS_CONFIG_EXTRA=""  # raft timing overrides
[ -n "${KS_HEARTBEAT_MS:-}" ] && KS_CONFIG_EXTRA="heartbeat_ms = $KS_HEARTBEAT_MS"
[ -n "${KS_ELECTION_MS:-}" ] && KS_CONFIG_EXTRA="$KS_CONFIG_EXTRA
election_timeout_ms = [$KS_ELECTION_MS]"
keystead_cluster3 "$KS" "$K" "$KS_API_BASE" "$KS_CLUSTER_BASE" ks_start
"$KS" cluster status --data-dir "$KD" >"$WORK/keystead-status.json"
log "keystead up: 3 nodes ($("$KS" --version)), leader $("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['leader'])" "$WORK/keystead-status.json")"

# --- OpenBao: wait for 3 voters (bounded) ------------------------------------------------------
for i in 1 2; do wait_http "https://127.0.0.1:${BAO_PORTS[$i]}/v1/sys/health" "$C/tls.crt" "429|473" 120; done
V=0
for k in $(seq 1 120); do
  V=$(bao_cli operator raft list-peers -format=json 2>/dev/null | "$PY" -c \
      "import json,sys;print(sum(1 for s in json.load(sys.stdin)['data']['config']['servers'] if s['voter']))" || echo 0)
  [ "$V" = 3 ] && break; sleep 1
done
[ "$V" = 3 ] || { log "openbao: only $V voters after 120 s"; exit 1; }
bao_cli operator raft list-peers >"$WORK/openbao/peers.txt"
log "openbao up: 3 voters ($("$BAO" version))"

"$PY" - "$WORK/state.json" <<EOF
import json, sys
W = "$WORK"
ks_ports = [${KS_PORTS[0]}, ${KS_PORTS[1]}, ${KS_PORTS[2]}]
bao_ports = [${BAO_PORTS[0]}, ${BAO_PORTS[1]}, ${BAO_PORTS[2]}]
pid = lambda n: int(open(f"{W}/pids/{n}").read())
json.dump({
  "keystead": {
    "bin": "$KS", "ca": "$K/ca.pem",
    "admin_token": json.load(open("$KD/admin.json"))["token"],
    "principal": json.load(open(f"$K/principal.json")),
    "nodes": [{"id": i + 1, "port": ks_ports[i], "pid": pid(f"ks-n{i+1}"),
               "pid_file": f"{W}/pids/ks-n{i+1}", "config": f"$K/node-{i+1}.toml",
               "log": f"$K/node-{i+1}.log"} for i in range(3)],
    "version": "$("$KS" --version)",
    "head_commit": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)",
    "binary_mtime_utc": "$(date -u -r "$KEYSTEAD_BIN" +%FT%TZ)",
    "binary_older_than_sources": ${KS_STALE:-0} == 1,
    "raft_timing": {"heartbeat_ms": "${KS_HEARTBEAT_MS:-default (50)}",
                    "election_timeout_ms": "${KS_ELECTION_MS:-default (200,400)}"},
    "mode": "keystead serve x3 (cluster init, zones z1-z3), redb + raft, TLS by rustls, cluster CA"},
  "openbao": {
    "bao": "$BAO", "ca": "$C/tls.crt", "token": "$BAO_TOKEN",
    "nodes": [{"id": i + 1, "port": bao_ports[i], "pid": pid(f"bao-n{i+1}"),
               "pid_file": f"{W}/pids/bao-n{i+1}", "config": f"{W}/openbao/n{i+1}/config.hcl",
               "log": f"{W}/openbao/n{i+1}/server.log"} for i in range(3)],
    "version": "$("$BAO" version)",
    "performance_multiplier": $BAO_PM,
    "mode": "bao server x3, storage raft (retry_join), TLS listener, static seal, KV v2"},
}, open(sys.argv[1], "w"), indent=1)
EOF

"$PY" "$HERE/cluster.py" "$WORK/state.json" "$OUT" --duration "$DUR" --rounds "$ROUNDS" --kills "$KILLS" \
  --client "${BENCH_CLIENT:-python}"
