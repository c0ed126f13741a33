#!/usr/bin/env bash
# Consumer fan-out replay: N concurrent `strata bench consume` processes each read the
# whole history of one topic from a freshly restarted `strata dev` (empty read cache), on
# a local directory bucket and on a local S3 server (SeaweedFS, scripts/seaweedfs.sh).
#
# For each backend it writes one history (FANOUT_RECORDS records of 1 KiB in 3
# partitions, about 1 GB) with compaction off, then for each N in FANOUT_CONSUMERS:
#   restart the node (SIGTERM, wait for exit, same command, wait for /readyz),
#   scrape /metrics and the agent's CPU ticks, run N consumers in parallel
#   (`--from earliest --until-end --json`), wait for all, scrape again.
# On S3 it then (FANOUT_COMPACTED=1) restarts the node with compaction on, waits until
# the compaction counters stop moving, restarts it with compaction off and replays the
# now compacted history again with FANOUT_COMPACTED_CONSUMERS consumers.
#
# Per run it prints a Markdown table row and a JSON line (stdout; progress on stderr):
#   MB/s      = bytes of record values delivered to all consumers / wall time of the fan-out
#   GETs      = agent's bucket GETs during the run (strata_object_store_requests_total{op="get"})
#   GETs/GB history = GETs / GB of record batches in the topic (what one consumer reads)
#   GETs/GB served  = GETs / GB of record batches delivered to all consumers
#   agent CPU = utime+stime of the `strata dev` process during the run (/proc/PID/stat)
# GB and MB are 10^9 and 10^6 bytes.
#
# Usage:
#   STRATA_BIN=target/release/strata scripts/bench_fanout.sh
# Env:
#   STRATA_BIN                 strata binary (default $REPO/target/release/strata; never built here)
#   FANOUT_BACKENDS            "local s3" (default), or one of them
#   FANOUT_CONSUMERS           consumer counts (default "1 10 50")
#   FANOUT_RECORDS             records of 1 KiB in the history (default 1000000, ~1 GB)
#   FANOUT_COMPACTED           1 (default): also replay the S3 history after compaction; 0: skip
#   FANOUT_COMPACTED_CONSUMERS consumer counts for the compacted replay (default "1")
#   FANOUT_PORT_BASE           first of the loopback ports used (default 41100; uses +0 to +9)
#   FANOUT_JSON_OUT            also append the JSON lines to this file
#   FANOUT_NODE_ARGS           extra `strata dev` flags, e.g. "--read-cache-bytes 2147483648"
#   STRATA_S3_VENV             venv holding `weed`, passed to scripts/seaweedfs.sh
# Everything runs on 127.0.0.1, in a temp dir that is removed at exit; the script stops
# the processes it started (the node, the consumers, the SeaweedFS server of its temp dir)
# and no others.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRATA_BIN="${STRATA_BIN:-$REPO/target/release/strata}"
BACKENDS="${FANOUT_BACKENDS:-local s3}"
CONSUMERS="${FANOUT_CONSUMERS:-1 10 50}"
RECORDS="${FANOUT_RECORDS:-1000000}"
COMPACTED="${FANOUT_COMPACTED:-1}"
COMPACTED_CONSUMERS="${FANOUT_COMPACTED_CONSUMERS:-1}"
PORT_BASE="${FANOUT_PORT_BASE:-41100}"
JSON_OUT="${FANOUT_JSON_OUT:-}"
read -r -a EXTRA_NODE_ARGS <<<"${FANOUT_NODE_ARGS:-}"
RECORD_SIZE=1024
PARTITIONS=3
TOPIC=fanout
CLK_TCK="$(getconf CLK_TCK)"

[ -x "$STRATA_BIN" ] || { echo "no strata binary at $STRATA_BIN (set STRATA_BIN)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/strata-fanout.XXXXXX)"
NODE_PID=""
SEAWEED_DIR=""
CONSUMER_PIDS=()

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# --- cleanup: only what this script started ------------------------------------------
cleanup() {
    local p
    for p in "${CONSUMER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_node || true
    if [ -n "$SEAWEED_DIR" ]; then
        "$REPO/scripts/seaweedfs.sh" stop "$SEAWEED_DIR" >&2 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the node --------------------------------------------------------------------------
# NODE_ARGS (set per backend) plus COMPACTION_ARGS make the `strata dev` command line.
NODE_ARGS=()
COMPACTION_ARGS=(--compaction-interval 0s)

start_node() {
    "$STRATA_BIN" dev "${NODE_ARGS[@]}" "${COMPACTION_ARGS[@]}" >>"$WORK/node.log" 2>&1 &
    NODE_PID=$!
    local deadline=$((SECONDS + 60))
    until curl -fs -o /dev/null "http://$HTTP_ADDR/readyz"; do
        if ! kill -0 "$NODE_PID" 2>/dev/null; then
            log "strata dev exited during start; last log lines:"; tail -20 "$WORK/node.log" >&2
            exit 1
        fi
        [ "$SECONDS" -lt "$deadline" ] || { log "strata dev not ready after 60 s"; exit 1; }
        sleep 0.2
    done
}

stop_node() {
    [ -n "$NODE_PID" ] || return 0
    kill -TERM "$NODE_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$NODE_PID" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "strata dev (pid $NODE_PID) still running 30 s after SIGTERM; sending SIGKILL"
            kill -KILL "$NODE_PID" 2>/dev/null || true
        fi
        sleep 0.2
    done
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
}

restart_node() { stop_node; start_node; }

# --- measurements ----------------------------------------------------------------------
scrape() { curl -fsS "http://$HTTP_ADDR/metrics" > "$1"; }

# metric FILE NAME: sum of the samples of NAME (any labels, or exactly NAME{labels})
metric() {
    awk -v m="$2" '
        index(m, "{") > 0 { if ($1 == m) s += $2; next }
        $1 == m || index($1, m "{") == 1 { s += $2 }
        END { printf "%.0f\n", s }' "$1"
}

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

load1() { awk '{ print $1 }' /proc/loadavg; }

# --- one fan-out run -------------------------------------------------------------------
# run_fanout BACKEND HISTORY_LABEL N
run_fanout() {
    local backend="$1" history="$2" n="$3" i
    restart_node
    local load_before cpu_before cpu_after t0 t1
    load_before="$(uptime | sed 's/.*load average: //')"
    scrape "$WORK/m.before"
    cpu_before="$(cpu_ticks "$NODE_PID")"
    log "$backend/$history: $n consumer(s), load average $load_before"
    rm -f "$WORK"/c.*.json "$WORK"/c.*.err
    CONSUMER_PIDS=()
    t0="$(date +%s.%N)"
    for ((i = 1; i <= n; i++)); do
        "$STRATA_BIN" bench consume --bootstrap "$KAFKA_ADDR" --topic "$TOPIC" \
            --from earliest --until-end --json --quiet \
            >"$WORK/c.$i.json" 2>"$WORK/c.$i.err" &
        CONSUMER_PIDS+=($!)
    done
    local failed=0 p
    for p in "${CONSUMER_PIDS[@]}"; do wait "$p" || failed=$((failed + 1)); done
    t1="$(date +%s.%N)"
    CONSUMER_PIDS=()
    cpu_after="$(cpu_ticks "$NODE_PID")"
    scrape "$WORK/m.after"
    local load_after
    load_after="$(uptime | sed 's/.*load average: //')"

    # consumers: value bytes, record-batch bytes, records, and any that fell short
    local sums
    sums="$(cat "$WORK"/c.*.json | jq -s --argjson want "$HISTORY_RECORDS" '
        [ (map(.bytes) | add), (map(.wire_bytes) | add), (map(.records) | add),
          (map(select(.records != $want or (.errors | length) > 0)) | length), length ]
        | @tsv' -r)"
    local bytes wire records short reports
    read -r bytes wire records short reports <<<"$sums"
    if [ "$failed" -gt 0 ] || [ "$short" -gt 0 ] || [ "$reports" -ne "$n" ]; then
        log "WARNING: $failed consumer(s) exited non-zero, $short reported errors or a record" \
            "count other than $HISTORY_RECORDS, $reports of $n printed a summary"
        for ((i = 1; i <= n; i++)); do
            if [ -s "$WORK/c.$i.err" ]; then log "consumer $i stderr:"; tail -5 "$WORK/c.$i.err" >&2; fi
        done
    fi

    local d name
    declare -A delta
    for name in 'strata_object_store_requests_total{op="get"}' \
                'strata_object_store_bytes_total{op="get"}' \
                'strata_agent_read_bucket_gets_total{reason="demand"}' \
                'strata_agent_read_bucket_gets_total{reason="prefetch"}' \
                strata_agent_read_block_hits_total strata_agent_read_block_misses_total \
                strata_agent_read_prefetch_issued_total strata_agent_read_prefetch_used_total \
                strata_agent_fetch_bytes_total; do
        d=$(( $(metric "$WORK/m.after" "$name") - $(metric "$WORK/m.before" "$name") ))
        delta[$name]=$d
    done
    local gets="${delta['strata_object_store_requests_total{op="get"}']}"
    local get_bytes="${delta['strata_object_store_bytes_total{op="get"}']}"

    # derived figures (awk for the floating point)
    local row json
    row="$(awk -v b="$backend" -v h="$history" -v n="$n" -v hist="$HISTORY_WIRE" \
        -v bytes="$bytes" -v wire="$wire" -v t0="$t0" -v t1="$t1" -v gets="$gets" \
        -v gb="$get_bytes" -v c0="$cpu_before" -v c1="$cpu_after" -v tck="$CLK_TCK" \
        -v lb="$load_before" -v la="$load_after" -v objs="$HISTORY_LAYOUT" '
        BEGIN {
            wall = t1 - t0; mbs = bytes / 1e6 / wall; cpu = (c1 - c0) / tck
            gph = gets / (hist / 1e9); gps = gets / (wire / 1e9)
            printf "| %s | %s | %d | %.2f GB, %s | %.0f | %d | %.2f GB | %.0f | %.1f | %.1f | %.1f | %s / %s |\n",
                b, h, n, hist / 1e9, objs, mbs, gets, gb / 1e9, gph, gps, cpu, wall, lb, la
            printf "%.3f %.1f %.2f %.2f %.3f\n", wall, mbs, gph, gps, cpu
        }')"
    local md wall mbs gph gps cpu
    md="$(head -1 <<<"$row")"
    read -r wall mbs gph gps cpu <<<"$(tail -1 <<<"$row")"
    json="$(jq -cn --arg backend "$backend" --arg history "$history" --argjson consumers "$n" \
        --argjson history_bytes "$HISTORY_WIRE" --arg history_layout "$HISTORY_LAYOUT" \
        --argjson value_bytes "$bytes" --argjson served_bytes "$wire" --argjson records "$records" \
        --argjson wall_s "$wall" --argjson mb_per_s "$mbs" --argjson bucket_gets "$gets" \
        --argjson bucket_get_bytes "$get_bytes" \
        --argjson gets_demand "${delta['strata_agent_read_bucket_gets_total{reason="demand"}']}" \
        --argjson gets_prefetch "${delta['strata_agent_read_bucket_gets_total{reason="prefetch"}']}" \
        --argjson block_hits "${delta[strata_agent_read_block_hits_total]}" \
        --argjson block_misses "${delta[strata_agent_read_block_misses_total]}" \
        --argjson prefetch_issued "${delta[strata_agent_read_prefetch_issued_total]}" \
        --argjson prefetch_used "${delta[strata_agent_read_prefetch_used_total]}" \
        --argjson gets_per_gb_history "$gph" --argjson gets_per_gb_served "$gps" \
        --argjson agent_cpu_s "$cpu" --argjson consumers_failed "$((failed + short))" \
        --arg load_before "$load_before" --arg load_after "$load_after" \
        '$ARGS.named')"
    echo "$md"
    echo "$json"
    ROWS+=("$md")
    JSONS+=("$json")
    if [ -n "$JSON_OUT" ]; then echo "$json" >> "$JSON_OUT"; fi
}

# --- one backend: node, history, fan-out runs --------------------------------------------
# produce_history: writes the topic with compaction off and records its size
produce_history() {
    local out="$WORK/produce.json" m="$WORK/m.produce"
    log "producing $RECORDS records of $RECORD_SIZE B into $TOPIC ($PARTITIONS partitions)"
    "$STRATA_BIN" bench produce --bootstrap "$KAFKA_ADDR" --topic "$TOPIC" \
        --partitions "$PARTITIONS" --record-size "$RECORD_SIZE" --records "$RECORDS" \
        --json --quiet > "$out"
    jq -c '{records, bytes, wire_bytes, mb_per_s, failed_records, errors}' "$out" >&2
    [ "$(jq '.failed_records' "$out")" -eq 0 ] || { log "produce had failed records"; exit 1; }
    HISTORY_RECORDS="$(jq '.records' "$out")"
    HISTORY_WIRE="$(jq '.wire_bytes' "$out")"
    scrape "$m"
    HISTORY_LAYOUT="$(metric "$m" 'strata_object_store_requests_total{op="put"}') segments"
}

# compact_and_wait: restart with compaction on until its counters stop moving
compact_and_wait() {
    COMPACTION_ARGS=(--compaction-interval 5s --compaction-min-age 0s)
    restart_node
    log "compacting (compaction every 5 s, min age 0 s)"
    local prev=-1 cur stable=0 deadline=$((SECONDS + 900)) m="$WORK/m.compact"
    while [ "$SECONDS" -lt "$deadline" ]; do
        sleep 5
        scrape "$m"
        cur="$(metric "$m" strata_agent_compaction_bytes_total)"
        if [ "$cur" -eq "$prev" ]; then stable=$((stable + 1)); else stable=0; fi
        prev="$cur"
        # done once three passes in a row (15 s) rewrote nothing more; with nothing
        # compacted at all, give it six passes
        if [ "$cur" -gt 0 ] && [ "$stable" -ge 3 ]; then break; fi
        [ "$stable" -ge 6 ] && break
    done
    log "compaction: $(grep -E '^strata_agent_compaction_[a-z_]+_total ' "$m" | tr '\n' ' ')"
    [ "$stable" -ge 3 ] || log "WARNING: compaction still moving after 900 s"
    [ "$cur" -gt 0 ] || log "WARNING: compaction rewrote nothing"
    COMPACTED_LAYOUT="$(metric "$m" strata_agent_compaction_bytes_total |
        awk '{ printf "%.2f GB", $1 / 1e9 }') compacted into $(metric "$m" strata_agent_compaction_objects_total) objects"
    COMPACTION_ARGS=(--compaction-interval 0s)
}

run_backend() {
    local backend="$1" idx="$2" n
    local base=$((PORT_BASE + idx * 5))
    KAFKA_ADDR="127.0.0.1:$base"
    HTTP_ADDR="127.0.0.1:$((base + 2))"
    local data="$WORK/$backend"
    mkdir -p "$data"
    NODE_ARGS=(--data-dir "$data" --kafka-listen "$KAFKA_ADDR"
               --metadata-listen "127.0.0.1:$((base + 1))" --http-listen "$HTTP_ADDR"
               --metadata-http-listen "127.0.0.1:$((base + 3))")
    if [ "$backend" = s3 ]; then
        SEAWEED_DIR="$WORK/seaweedfs"
        mkdir -p "$SEAWEED_DIR"
        eval "$("$REPO/scripts/seaweedfs.sh" start "$SEAWEED_DIR")"
        NODE_ARGS+=(--bucket "s3://$STRATA_TEST_S3_SEAWEEDFS_BUCKET/fanout"
                    --s3-endpoint "$STRATA_TEST_S3_SEAWEEDFS_ENDPOINT" --s3-path-style
                    --s3-region "$STRATA_TEST_S3_SEAWEEDFS_REGION"
                    --s3-access-key-id "$STRATA_TEST_S3_SEAWEEDFS_ACCESS_KEY_ID"
                    --s3-secret-access-key "$STRATA_TEST_S3_SEAWEEDFS_SECRET_ACCESS_KEY")
    else
        NODE_ARGS+=(--bucket "file://$data/bucket")
        mkdir -p "$data/bucket"
    fi
    NODE_ARGS+=("${EXTRA_NODE_ARGS[@]}")
    COMPACTION_ARGS=(--compaction-interval 0s)
    # shellcheck disable=SC2001  # (a pattern with [^ ]* is clearer in sed)
    log "backend $backend: strata dev $(sed 's/--s3-secret-access-key [^ ]*/--s3-secret-access-key .../' \
        <<<"${NODE_ARGS[*]} ${COMPACTION_ARGS[*]}")"
    start_node
    produce_history
    for n in $CONSUMERS; do run_fanout "$backend" uncompacted "$n"; done
    if [ "$backend" = s3 ] && [ "$COMPACTED" = 1 ]; then
        compact_and_wait
        HISTORY_LAYOUT="$COMPACTED_LAYOUT"
        for n in $COMPACTED_CONSUMERS; do run_fanout "$backend" compacted "$n"; done
    fi
    stop_node
    if [ -n "$SEAWEED_DIR" ]; then
        "$REPO/scripts/seaweedfs.sh" stop "$SEAWEED_DIR" >&2
        SEAWEED_DIR=""
    fi
    rm -rf "$data" "$WORK/seaweedfs"
}

ROWS=()
JSONS=()
log "machine: $(nproc) CPUs; $(free -g | awk '/^Mem:/ { print $2 " GB RAM" }'); load average $(load1)"
idx=0
for backend in $BACKENDS; do
    case "$backend" in local | s3) ;; *) echo "unknown backend $backend" >&2; exit 1 ;; esac
    run_backend "$backend" "$idx"
    idx=$((idx + 1))
done

echo
echo "| backend | history | consumers | history size | MB/s (sum) | bucket GETs | bucket bytes read | GETs per GB of history | GETs per GB served | agent CPU s | wall s | load avg before / after |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n' "${JSONS[@]}"
