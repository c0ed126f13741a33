#!/usr/bin/env bash
# Produce benchmark: builds strata (release), starts `strata dev` on a temp
# data dir and loopback ports, runs scripts/bench_produce.py flat out and at a
# fixed 10 MB/s, prints the results, then stops the node.
#
# Usage: scripts/bench.sh
# Env:   CARGO_TARGET_DIR (default $REPO/target), BENCH_DURATION (seconds per run, default 20),
#        BENCH_RECORD_SIZE (default 1024), BENCH_PARTITIONS (default 3),
#        STRATA_BIN (use this binary instead of building the release one)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
"$REPO/scripts/test-env.sh"
PY="${STRATA_VENV:-$REPO/.venv}/bin/python"

if [ -n "${STRATA_BIN:-}" ]; then
    echo "==> using STRATA_BIN=$STRATA_BIN (no build)"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
    echo "==> cargo build --release -p strata"
    cargo build --release -p strata
    STRATA_BIN="$CARGO_TARGET_DIR/release/strata"
fi

DURATION="${BENCH_DURATION:-20}"
RECORD_SIZE="${BENCH_RECORD_SIZE:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-3}"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/strata-bench.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

read -r kafka_port metadata_port < <("$PY" - <<'PYEOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PYEOF
)

echo "==> starting strata dev (data dir $workdir/data)"
"$STRATA_BIN" dev --data-dir "$workdir/data" \
    --kafka-listen "127.0.0.1:$kafka_port" --metadata-listen "127.0.0.1:$metadata_port" \
    >"$workdir/stdout.log" 2>"$workdir/stderr.log" </dev/null &
server_pid=$!

bootstrap=""
for _ in $(seq 1 300); do
    if line="$(grep -m1 '^strata dev ready: ' "$workdir/stdout.log" 2>/dev/null)"; then
        bootstrap="$(sed -E 's/.*bootstrap=([^ ]+).*/\1/' <<<"$line")"
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "strata dev exited before becoming ready; stderr:" >&2
        cat "$workdir/stderr.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$bootstrap" ]; then
    echo "strata dev printed no ready line within 30s; stderr:" >&2
    tail -n 50 "$workdir/stderr.log" >&2
    exit 1
fi
echo "    ready at $bootstrap"

status=0
echo
echo "==> flat out: ${RECORD_SIZE} B records, acks=all, ${DURATION}s"
"$PY" "$REPO/scripts/bench_produce.py" --bootstrap "$bootstrap" --topic bench-flat \
    --partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --acks all --duration "$DURATION" || status=1

rate=$(( 10000000 / RECORD_SIZE ))
echo
echo "==> fixed rate: 10 MB/s (${rate} records/s of ${RECORD_SIZE} B), acks=all, ${DURATION}s"
"$PY" "$REPO/scripts/bench_produce.py" --bootstrap "$bootstrap" --topic bench-rate \
    --partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --acks all --duration "$DURATION" \
    --rate "$rate" || status=1

if [ "$status" -ne 0 ]; then
    echo "some benchmark runs reported errors; last server log lines:" >&2
    tail -n 30 "$workdir/stderr.log" >&2
fi
exit "$status"
