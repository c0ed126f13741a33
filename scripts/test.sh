#!/usr/bin/env bash
# The test command: builds strata, runs the Rust tests, then the end-to-end
# Python suite in tests/ against the freshly built binary.
#
# Usage: scripts/test.sh [pytest args...]
#   scripts/test.sh                      # everything
#   scripts/test.sh -k kcat              # only the kcat tests (Rust tests still run)
#   scripts/test.sh tests/test_cli.py -x # a path argument replaces the default `tests`
#
# Env:
#   CARGO_TARGET_DIR       cargo target dir (default: $REPO/target)
#   STRATA_TEST_TIMEOUT    per-test timeout in seconds (default: 300)
#   PYTHON                 interpreter for the venv (see scripts/test-env.sh)
set -euo pipefail

ORIG_PWD="$PWD"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# 1. kcat + Python venv (installs only what is missing or changed).
"$REPO/scripts/test-env.sh"
VENV="${STRATA_VENV:-$REPO/.venv}"

# 2. Build and Rust tests.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
case "$CARGO_TARGET_DIR" in
    /*) ;;
    *) CARGO_TARGET_DIR="$ORIG_PWD/$CARGO_TARGET_DIR" ;;
esac
export CARGO_TARGET_DIR

echo "==> cargo build -p strata (target dir: $CARGO_TARGET_DIR)"
cargo build -p strata
echo "==> cargo test --workspace"
cargo test --workspace

echo "==> terraform fmt, parse and checkov (scripts/check-terraform.sh)"
"$REPO/scripts/check-terraform.sh"

export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
if [ ! -x "$STRATA_BIN" ]; then
    echo "error: $STRATA_BIN was not produced by the build" >&2
    exit 1
fi

# 3. End-to-end suite. Arguments that name an existing path (relative to the
# caller's directory or the repo) replace the default `tests` target.
pytest_args=()
have_path=0
prev=""
for arg in "$@"; do
    path_part="${arg%%::*}"
    case "$prev" in
        -k|-m|-p|-o|-c|--deselect|--ignore|--rootdir|--timeout|--maxfail|--durations|--tb) is_value=1 ;;
        *) is_value=0 ;;
    esac
    prev="$arg"
    if [ "$is_value" -eq 0 ] && [ "${arg#-}" = "$arg" ] \
        && { [ -e "$ORIG_PWD/$path_part" ] || [ -e "$REPO/$path_part" ] || [ -e "$path_part" ]; }; then
        have_path=1
        if [ -e "$ORIG_PWD/$path_part" ] && [ "${path_part#/}" = "$path_part" ]; then
            arg="$ORIG_PWD/$arg"
        fi
    fi
    pytest_args+=("$arg")
done
if [ "$have_path" -eq 0 ]; then
    pytest_args=(tests "${pytest_args[@]}")
fi

echo "==> pytest (STRATA_BIN=$STRATA_BIN)"
set +e
"$VENV/bin/python" -m pytest -v --timeout="${STRATA_TEST_TIMEOUT:-300}" "${pytest_args[@]}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests; counting that as a failure" >&2
    exit 1
fi
exit "$rc"
