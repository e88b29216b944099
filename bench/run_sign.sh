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
# WAIT_CLUSTER_S, BENCH_CLIENT (python, the default, or wrk: see bench/wrk_phase.py).
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

# --- tools, binary, helpers (bench/lib.sh) ----------------------------------------------
source "$HERE/lib.sh"
bench_tools
bench_keystead_binary

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

start_dev_and_openbao

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
  --rounds "$ROUNDS" --warmup "$WARM" --client "${BENCH_CLIENT:-python}"
