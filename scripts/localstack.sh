#!/usr/bin/env bash
# A local LocalStack S3 for the tests, without Docker: LocalStack's Python runtime in a
# Python 3.13 venv, S3 only, on 127.0.0.1, state under DIR.
#
# Usage:
#   eval "$(scripts/localstack.sh start DIR)"   # starts (or finds running) and prints env lines
#   scripts/localstack.sh stop DIR              # stops the server of DIR, and only that process
#
# `start` is idempotent: with the server of DIR already up it only prints the env lines.
# It prints on stdout only
#   export STRATA_TEST_S3_LOCALSTACK_ENDPOINT=http://127.0.0.1:PORT
#   export STRATA_TEST_S3_LOCALSTACK_BUCKET=... _ACCESS_KEY_ID=... _SECRET_ACCESS_KEY=...
#   export STRATA_TEST_S3_LOCALSTACK_REGION=us-east-1 _DIR=DIR _PID=PID
# and progress on stderr. Files in DIR: volume/, filesystem/, port, localstack.pid,
# localstack.log, env. LocalStack keeps S3 in memory: a restart starts empty.
#
# Exit codes: 0 ok; 1 error; 3 no Python 3.13 on this machine (the caller may skip
# LocalStack: the package needs 3.13 and this script does not build Python itself).
#
# Env:
#   LOCALSTACK_PORT           gateway port (default: a free one, then kept for DIR)
#   LOCALSTACK_BUCKET         bucket created at start (default: strata-test)
#   LOCALSTACK_START_TIMEOUT  seconds to wait for readiness (default: 120)
#   STRATA_LOCALSTACK_VENV    venv (default: $REPO/.venv-localstack; built from
#                             scripts/requirements-s3-localstack.txt, rebuilt when it changes)
#   PYTHON313                 a Python 3.13 interpreter (default: pyenv's newest 3.13, else
#                             python3.13 on PATH)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STRATA_LOCALSTACK_VENV:-$REPO/.venv-localstack}"
REQUIREMENTS="$REPO/scripts/requirements-s3-localstack.txt"
BUCKET="${LOCALSTACK_BUCKET:-strata-test}"
# LocalStack accepts any keys; these are what the tests sign with
ACCESS_KEY_ID="test"
SECRET_ACCESS_KEY="test"
START_TIMEOUT="${LOCALSTACK_START_TIMEOUT:-120}"
STOP_TIMEOUT=30

SERVER_NAME=localstack
# shellcheck source=scripts/lib/test-server.sh
. "$REPO/scripts/lib/test-server.sh"
parse_server_args "$@"
PIDFILE="$DIR/localstack.pid"

# --- Python 3.13 and the venv ------------------------------------------------------------
find_python313() {
    if [ -n "${PYTHON313:-}" ]; then
        echo "$PYTHON313"
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local version
        version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V | tail -n 1 || true)"
        if [ -n "$version" ]; then
            echo "$(pyenv root)/versions/$version/bin/python3"
            return
        fi
    fi
    command -v python3.13 2>/dev/null || true
}

ensure_venv() {
    local py
    py="$(find_python313)"
    if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
        log "no usable Python 3.13 (looked at \$PYTHON313, pyenv's versions and python3.13 on PATH);"
        log "localstack-core needs it: install one (e.g. 'pyenv install 3.13') or skip LocalStack"
        exit 3
    fi
    local want have=""
    want="$( { "$py" -c 'import sys; print(sys.version)'; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"
    [ -f "$VENV/.strata-localstack.stamp" ] && have="$(cat "$VENV/.strata-localstack.stamp")"
    if [ "$want" = "$have" ] && [ -x "$VENV/bin/python" ]; then
        return
    fi
    log "installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into $VENV (Python $("$py" -c 'import platform; print(platform.python_version())'))"
    rm -rf "$VENV"
    "$py" -m venv "$VENV" || die "cannot create venv $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS" >&2 \
        || die "pip install -r $REQUIREMENTS failed"
    "$VENV/bin/python" -c 'import localstack.runtime.main, boto3' \
        || die "localstack is not importable in $VENV"
    echo '*' > "$VENV/.gitignore"  # the venv keeps itself out of git
    echo "$want" > "$VENV/.strata-localstack.stamp"
}

# --- the process of DIR ------------------------------------------------------------------
# Prints the pid of DIR's running LocalStack, or nothing. The process is recognised by its
# command line and its LOCALSTACK_VOLUME_DIR, so a reused pid is never acted on.
running_pid() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 0
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "-m localstack.runtime.main" || return 0
    tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "LOCALSTACK_VOLUME_DIR=$DIR/volume" \
        || return 0
    echo "$pid"
}

print_env() {
    local port="$1" pid="$2"
    {
        echo "export STRATA_TEST_S3_LOCALSTACK_ENDPOINT=http://127.0.0.1:$port"
        echo "export STRATA_TEST_S3_LOCALSTACK_BUCKET=$BUCKET"
        echo "export STRATA_TEST_S3_LOCALSTACK_ACCESS_KEY_ID=$ACCESS_KEY_ID"
        echo "export STRATA_TEST_S3_LOCALSTACK_SECRET_ACCESS_KEY=$SECRET_ACCESS_KEY"
        echo "export STRATA_TEST_S3_LOCALSTACK_REGION=us-east-1"
        echo "export STRATA_TEST_S3_LOCALSTACK_DIR=$DIR"
        echo "export STRATA_TEST_S3_LOCALSTACK_PID=$pid"
    } | tee "$DIR/env"
}

# Ready = the health endpoint reports S3 available or running. Then the bucket is made.
probe() {
    "$VENV/bin/python" - "$1" <<'PYEOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_localstack/health", timeout=3) as r:
        state = json.load(r).get("services", {}).get("s3")
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if state in ("available", "running") else 1)
PYEOF
}

create_test_bucket() {
    "$VENV/bin/python" - "$1" "$BUCKET" "$ACCESS_KEY_ID" "$SECRET_ACCESS_KEY" <<'PYEOF'
import sys, boto3
port, bucket, key, secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id=key, aws_secret_access_key=secret)
s3.create_bucket(Bucket=bucket)  # idempotent for the owner in us-east-1
s3.head_bucket(Bucket=bucket)
PYEOF
}

start() {
    ensure_venv
    if [ ! -s "$DIR/port" ]; then
        if [ -n "${LOCALSTACK_PORT:-}" ]; then
            echo "$LOCALSTACK_PORT" > "$DIR/port"
        else
            "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' > "$DIR/port"
        fi
    fi
    local port pid
    port="$(cat "$DIR/port")"
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        log "already running (pid $pid) on port $port"
        create_test_bucket "$port" || die "cannot create bucket $BUCKET"
        print_env "$port" "$pid"
        return
    fi
    mkdir -p "$DIR/volume" "$DIR/filesystem"
    log "starting LocalStack (S3 only) on 127.0.0.1:$port, state in $DIR"
    local started_ms
    started_ms="$(date +%s%3N)"
    (
        cd "$DIR"
        export GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$port" SERVICES=s3 \
            EAGER_SERVICE_LOADING=1 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0 \
            LOCALSTACK_VOLUME_DIR="$DIR/volume" FILESYSTEM_ROOT="$DIR/filesystem"
        # setsid: the server outlives this script and is not hit by the caller's Ctrl-C
        exec setsid "$VENV/bin/python" -m localstack.runtime.main \
            </dev/null >>"$DIR/localstack.log" 2>&1
    ) &
    pid=$!
    echo "$pid" > "$PIDFILE"
    local deadline=$((SECONDS + START_TIMEOUT))
    until probe "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PIDFILE"
            tail -n 30 "$DIR/localstack.log" >&2 || true
            die "LocalStack exited during startup (log: $DIR/localstack.log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$DIR/localstack.log" >&2 || true
            kill -TERM "$pid" 2>/dev/null || true
            die "not ready within ${START_TIMEOUT}s (log: $DIR/localstack.log); stopped it"
        fi
        sleep 0.2
    done
    create_test_bucket "$port" || die "cannot create bucket $BUCKET"
    log "ready in $(( $(date +%s%3N) - started_ms )) ms (pid $pid)"
    print_env "$port" "$pid"
}

stop() {
    stop_server
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
