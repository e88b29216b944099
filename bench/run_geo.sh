#!/usr/bin/env bash
# Region benchmark (docs/benchmarks.md): replication lag, switchover and forced-failover windows,
# and RPO, for two single-node regions plus a witness on this machine, with a one-way
# inter-region latency added by the test suite's fault proxy (tc netem is not available here).
#
#   bench/run_geo.sh [LATENCY_MS] [RUNS] [RATE]        (defaults: 20, 5, 20 writes/s)
#
# Writes bench/results/geo-<UTC date-time>.json. OpenBao has no counterpart in its open-source
# edition (performance/DR replication is a Vault Enterprise feature), so the comparison is with
# the seeds' figures for Azure Key Vault: failover in "a few minutes" (Microsoft-initiated, up
# to hours), "some data loss" possible, the secondary read-only.
#
# Environment: GEO_PARTS (comma list of lag,switchover,forced; default all), KEYSTEAD_BIN (default target/release/keystead, built if missing or older than
# crates/ unless KEYSTEAD_NO_BUILD=1), KEYSTEAD_VENV (the test suite's venv, default
# ~/.cache/keystead-venv, created by tests/python/run.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LATENCY="${1:-20}"; RUNS="${2:-5}"; RATE="${3:-20}"
KEYSTEAD_BIN="${KEYSTEAD_BIN:-$ROOT/target/release/keystead}"
VENV="${KEYSTEAD_VENV:-$HOME/.cache/keystead-venv}"
OUT="$HERE/results/geo-$(date -u +%Y%m%d-%H%M%S).json"

if [ "${KEYSTEAD_NO_BUILD:-0}" != 1 ] && { [ ! -x "$KEYSTEAD_BIN" ] || \
     [ -n "$(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$KEYSTEAD_BIN" -type f -print -quit)" ]; }; then
  echo "[run_geo] building keystead (release)" >&2
  (cd "$ROOT" && cargo build --release -p keystead)
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[run_geo] no venv at $VENV: run tests/python/run.sh once (it installs the SDKs)" >&2
  exit 1
fi
mkdir -p "$HERE/results"
KEYSTEAD_BIN="$KEYSTEAD_BIN" "$VENV/bin/python" "$HERE/geo.py" \
  --latency-ms "$LATENCY" --runs "$RUNS" --rate "$RATE" --out "$OUT" ${GEO_PARTS:+--parts "$GEO_PARTS"}
echo "[run_geo] results in $OUT" >&2
