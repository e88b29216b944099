#!/usr/bin/env bash
# Runs every Keystead test on a fresh machine: formatting and lint gates, the Rust unit and
# integration tests, then the black-box suite that drives the real binary with the official
# Azure Python SDKs (installed into a venv by tests/python/run.sh).
#
#   CARGO_TARGET_DIR  build directory (a persistent one outside the clone speeds CI up)
#   KEYSTEAD_VENV     Python venv for the SDKs (default: <repo>/.venv)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== black-box suite (Python Azure SDKs)"
# The debug build is what the Rust tests just built; it saves a second full (release) build
# in CI. Dependencies are optimised in the dev profile (Cargo.toml), so crypto is fast anyway.
cargo build --locked -p keystead
KEYSTEAD_BIN="$TARGET_DIR/debug/keystead" bash tests/python/run.sh -p no:cacheprovider
