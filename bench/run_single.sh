#!/usr/bin/env bash
# Single-node benchmark, Keystead vs OpenBao, in one run on this machine (see docs/benchmarks.md).
#
#   bench/run_single.sh [DURATION_S] [ROUNDS] [WARMUP_S]        (defaults: 10, 2, 2)
#
# Starts `keystead dev` and an OpenBao 2.7.2 single node (raft storage, TLS with a self-signed
# P-256 cert, static auto-unseal), both listening on 127.0.0.1 only, with their data under the same
# directory ($BENCH_WORK, default /tmp/keystead-bench/single, wiped first). Then bench/single.py
# runs, for each server: secret write at 1 and 8 connections and secret read at 32 connections,
# ROUNDS runs of DURATION_S seconds each (servers interleaved), and writes
# bench/results/single-<UTC date-time>.json. Both servers are stopped by PID on exit (trap).
# Whole run: about 2.5 minutes at the defaults (2 x 6 x 10 s of load + warm-up + setup).
#
# Environment: KEYSTEAD_BIN (default target/release/keystead; rebuilt with cargo if missing or
# older than crates/, unless KEYSTEAD_NO_BUILD=1), BENCH_WORK, KS_PORT (18443), BAO_PORT (18300).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DUR="${1:-10}"; ROUNDS="${2:-2}"; WARM="${3:-2}"
WORK="${BENCH_WORK:-/tmp/keystead-bench/single}"
KS_PORT="${KS_PORT:-18443}"; BAO_PORT="${BAO_PORT:-18300}"
KEYSTEAD_BIN="${KEYSTEAD_BIN:-$ROOT/target/release/keystead}"; KS_STALE=0
VENV="$HERE/.venv"; PY="$VENV/bin/python"
OUT="$HERE/results/single-$(date -u +%Y%m%d-%H%M%S).json"

log() { echo "[run_single] $*" >&2; }

# --- tools, binary, helpers (bench/lib.sh) ----------------------------------------------
source "$HERE/lib.sh"
bench_tools
bench_keystead_binary

start_dev_and_openbao

"$PY" - "$WORK/targets.json" <<EOF
import json, sys
json.dump({
  "keystead": {"port": $KS_PORT, "pid": $KS_PID, "credentials": "$WORK/keystead/dev-credentials.json",
               "data_dir": "$WORK/keystead", "version": "$("$KEYSTEAD_BIN" --version)",
               "head_commit": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)",
               "binary_mtime_utc": "$(date -u -r "$KEYSTEAD_BIN" +%FT%TZ)",
               "binary_older_than_sources": ${KS_STALE:-0} == 1,
               "mode": "keystead dev (single node, redb, TLS by rustls)"},
  "openbao": {"port": $BAO_PORT, "pid": $BAO_PID, "ca": "$C/tls.crt", "token": "$BAO_TOKEN",
              "data_dir": "$WORK/openbao/data", "version": "$("$BAO" version)",
              "mode": "bao server, storage raft (1 node), TLS listener, static seal, KV v2"},
}, open(sys.argv[1], "w"), indent=1)
EOF

"$PY" "$HERE/single.py" "$WORK/targets.json" "$OUT" --duration "$DUR" --rounds "$ROUNDS" \
  --warmup "$WARM"
