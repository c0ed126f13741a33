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

# 2a. Servers the tests need, as private throwaway processes on 127.0.0.1: PostgreSQL
# (the metadata store's conformance tests), SeaweedFS and LocalStack (the storage
# conformance suite and the S3 end-to-end tests). Servers given by the caller are used
# instead.
SERVICES_DIR="$(mktemp -d /tmp/strata-test.XXXXXX)"
chmod 755 "$SERVICES_DIR"
stop_services() {
    "$REPO/scripts/seaweedfs.sh" stop "$SERVICES_DIR/seaweedfs" >/dev/null 2>&1 || true
    "$REPO/scripts/localstack.sh" stop "$SERVICES_DIR/localstack" >/dev/null 2>&1 || true
    "$REPO/scripts/postgres.sh" destroy "$SERVICES_DIR/pg" >/dev/null 2>&1 || true
    rm -rf "$SERVICES_DIR"
}
trap stop_services EXIT
if [ -z "${STRATA_TEST_POSTGRES_URL:-}" ]; then
    echo "==> starting a private PostgreSQL cluster"
    export "$("$REPO/scripts/postgres.sh" start "$SERVICES_DIR/pg")"
fi
if [ -z "${STRATA_TEST_S3_SEAWEEDFS_ENDPOINT:-}" ]; then
    echo "==> starting SeaweedFS (S3)"
    eval "$("$REPO/scripts/seaweedfs.sh" start "$SERVICES_DIR/seaweedfs")"
fi
if [ -z "${STRATA_TEST_S3_LOCALSTACK_ENDPOINT:-}" ]; then
    echo "==> starting LocalStack (S3)"
    set +e
    localstack_env="$("$REPO/scripts/localstack.sh" start "$SERVICES_DIR/localstack")"
    rc=$?
    set -e
    case "$rc" in
        0) eval "$localstack_env" ;;
        3) echo "*** LocalStack skipped: no Python 3.13 on this machine ***" >&2 ;;
        *) exit "$rc" ;;
    esac
fi

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
