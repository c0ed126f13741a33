#!/usr/bin/env bash
# The benchmark scenarios of docs/benchmarks.md, each with `strata bench` and, where a
# librdkafka client can do the same, with confluent-kafka too:
#   1. produce flat out, 1 KiB records, acks=all (and the server's CPU seconds per GB);
#   2. produce at a fixed 10 MB/s (latency);
#   3. end-to-end latency at 10 MB/s;
#   4. replay of BENCH_REPLAY_GB of history after a restart (cold cache), from the bucket;
#   5. the client + loopback ceiling: the same produce into a broker that stores nothing.
# Builds strata (release), runs `strata dev` on a temp data dir and loopback ports, prints
# every result, then stops what it started.
#
# Usage: scripts/bench.sh
# Env:   CARGO_TARGET_DIR (default $REPO/target), BENCH_DURATION (seconds per run, default 20),
#        BENCH_RECORD_SIZE (default 1024), BENCH_PARTITIONS (default 3),
#        BENCH_REPLAY_GB (history to replay, default 5.5), STRATA_BIN (use this binary
#        instead of building the release one), BENCH_ONLY (space-separated scenario
#        numbers to run, default all)
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
REPLAY_GB="${BENCH_REPLAY_GB:-5.5}"
ONLY="${BENCH_ONLY:-1 2 3 4 5}"
RATE_MB=10

workdir="$(mktemp -d "${TMPDIR:-/tmp}/strata-bench.XXXXXX")"
server_pid=""
null_pid=""

stop_pid() {
    local pid="$1"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
}
cleanup() {
    stop_pid "$server_pid"
    stop_pid "$null_pid"
    rm -rf "$workdir"
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts `strata dev` on the work dir's data (kept across restarts); sets server_pid, bootstrap.
start_dev() {
    local kafka metadata http
    kafka="$(free_port)"; metadata="$(free_port)"; http="$(free_port)"
    "$STRATA_BIN" dev --data-dir "$workdir/data" --kafka-listen "127.0.0.1:$kafka" \
        --metadata-listen "127.0.0.1:$metadata" --http-listen "127.0.0.1:$http" \
        >>"$workdir/stdout.log" 2>>"$workdir/stderr.log" </dev/null &
    server_pid=$!
    bootstrap="127.0.0.1:$kafka"
    for _ in $(seq 1 300); do
        if [ "$(grep -c '^strata dev ready: ' "$workdir/stdout.log" 2>/dev/null)" -ge "${1:-1}" ]; then
            echo "    strata dev ready at $bootstrap"
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "strata dev exited before becoming ready; stderr:" >&2
            tail -n 50 "$workdir/stderr.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "strata dev printed no ready line within 30 s" >&2
    exit 1
}

# CPU seconds (user + system) the server has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$server_pid/stat"
}

bench() { "$STRATA_BIN" bench "$@"; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }
rate_records=$(( RATE_MB * 1000000 / RECORD_SIZE ))

echo "==> machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
start_dev 1

if wants 1; then
    echo
    echo "==> 1. produce flat out: ${RECORD_SIZE} B records, acks=all, ${PARTITIONS} partitions, ${DURATION}s"
    before="$(cpu_seconds)"
    bench produce --bootstrap "$bootstrap" --topic flat --partitions "$PARTITIONS" \
        --record-size "$RECORD_SIZE" --acks all --clients "$PARTITIONS" --duration "${DURATION}s" \
        --json >"$workdir/flat.json"
    after="$(cpu_seconds)"
    cat "$workdir/flat.json"
    "$PY" - "$workdir/flat.json" "$before" "$after" <<'PYEOF'
import json, sys
summary = json.load(open(sys.argv[1]))
cpu = float(sys.argv[3]) - float(sys.argv[2])
gb = summary["bytes"] / 1e9
print(f"    server CPU: {cpu:.1f} s for {gb:.2f} GB of record values = {cpu / gb:.1f} CPU s per GB ingested")
PYEOF
    echo "    librdkafka (confluent-kafka), same scenario:"
    "$PY" "$REPO/scripts/bench_produce.py" --bootstrap "$bootstrap" --topic flat-rdkafka \
        --partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --acks all --duration "$DURATION"
fi

if wants 2; then
    echo
    echo "==> 2. produce at ${RATE_MB} MB/s (${rate_records} records/s), acks=all, ${DURATION}s"
    bench produce --bootstrap "$bootstrap" --topic rate --partitions "$PARTITIONS" \
        --record-size "$RECORD_SIZE" --acks all --rate "$RATE_MB" --duration "${DURATION}s"
    echo "    librdkafka (confluent-kafka), same scenario:"
    "$PY" "$REPO/scripts/bench_produce.py" --bootstrap "$bootstrap" --topic rate-rdkafka \
        --partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --acks all --duration "$DURATION" \
        --rate "$rate_records"
fi

if wants 3; then
    echo
    echo "==> 3. end to end at ${RATE_MB} MB/s, ${DURATION}s"
    bench e2e --bootstrap "$bootstrap" --topic e2e --partitions "$PARTITIONS" \
        --record-size "$RECORD_SIZE" --rate "$RATE_MB" --duration "${DURATION}s"
fi

if wants 4; then
    records="$("$PY" -c "print(int($REPLAY_GB * 1e9 / $RECORD_SIZE))")"
    echo
    echo "==> 4. replay: writing ${REPLAY_GB} GB of history (${records} records), then a restart (cold cache)"
    bench produce --bootstrap "$bootstrap" --topic history --partitions "$PARTITIONS" \
        --record-size "$RECORD_SIZE" --acks all --clients "$PARTITIONS" --records "$records" >/dev/null
    stop_pid "$server_pid"
    start_dev 2
    echo "    strata bench consume, 8 MiB per partition per fetch:"
    bench consume --bootstrap "$bootstrap" --topic history --from earliest --until-end \
        --partition-max-bytes 8388608
    if [ -x "$REPO/scripts/bench_replay.py" ] || [ -f "$REPO/scripts/bench_replay.py" ]; then
        stop_pid "$server_pid"
        start_dev 3
        echo "    librdkafka (confluent-kafka), cold cache again:"
        "$PY" "$REPO/scripts/bench_replay.py" --bootstrap "$bootstrap" --topic history
    fi
fi

if wants 5; then
    echo
    echo "==> 5. ceiling: the same flat-out produce into a null broker (stores nothing)"
    null_port="$(free_port)"
    "$STRATA_BIN" bench null-broker --listen "127.0.0.1:$null_port" >"$workdir/null.log" 2>&1 &
    null_pid=$!
    sleep 1
    bench produce --bootstrap "127.0.0.1:$null_port" --topic flat --partitions "$PARTITIONS" \
        --record-size "$RECORD_SIZE" --acks all --clients "$PARTITIONS" --duration "${DURATION}s"
    echo "    librdkafka (confluent-kafka) into the null broker:"
    "$PY" "$REPO/scripts/bench_produce.py" --bootstrap "127.0.0.1:$null_port" --topic flat \
        --partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --acks all --duration "$DURATION"
fi
