#!/usr/bin/env bash
# Run the Keystead Python black-box suite.
#   KEYSTEAD_VENV  venv to create/update (default: <repo>/.venv)
#   KEYSTEAD_BIN   server binary (default: <repo>/target/release/keystead)
# Extra arguments are passed to pytest; the exit code is pytest's.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
VENV="${KEYSTEAD_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || { echo "run.sh: cannot create venv at $VENV" >&2; exit 2; }
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$SCRIPT_DIR/requirements.txt" \
    || { echo "run.sh: pip install failed" >&2; exit 2; }

export KEYSTEAD_BIN="${KEYSTEAD_BIN:-$REPO_ROOT/target/release/keystead}"
case "$KEYSTEAD_BIN" in
    /*) ;;
    *) KEYSTEAD_BIN="$REPO_ROOT/$KEYSTEAD_BIN" ;;
esac

cd "$REPO_ROOT"
"$VENV/bin/python" -m pytest -q tests/python "$@"
exit $?
