#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: the metadata store's conformance tests and
# `strata dev --store postgres://...` runs.
#
# Usage:
#   scripts/postgres.sh start DIR   # init (first time) and start a cluster in DIR; prints
#                                   #   STRATA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh url DIR     # print that line again for a running cluster
#   scripts/postgres.sh stop DIR    # stop it (fast shutdown); DIR is kept
#   scripts/postgres.sh destroy DIR # stop it and remove DIR
#
# The cluster trusts every local connection (initdb --auth=trust, superuser `postgres`),
# listens only on 127.0.0.1 on a free port, keeps its socket in DIR, and runs with
# fsync off: it is for tests, never for data anyone wants back. The commands are
# idempotent: `start` on a running cluster only prints its URL, `stop` and `destroy` on a
# stopped (or never created) one do nothing more than needed. Only the URL line goes to
# stdout; progress and errors go to stderr.
#
# PG_DURABLE=1 (at the first start) keeps fsync and synchronous commit on, for benchmarks.
#
# Binaries: PG_BINDIR if set, else `pg_config --bindir`, else the newest
# /usr/lib/postgresql/*/bin, else initdb on PATH; when none is found and we are root,
# Debian's `postgresql` package is installed with apt-get. initdb refuses to run as root,
# so as root the cluster runs as the `postgres` system user (or `nobody` when there is
# none), which then owns DIR.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    echo "usage: $0 {start|url|stop|destroy} DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd="$1"
dir="$2"

find_bindir() {
    local candidate
    if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then
        echo "$PG_BINDIR"
        return 0
    fi
    if command -v pg_config >/dev/null 2>&1; then
        candidate="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$candidate" ] && [ -x "$candidate/initdb" ]; then
            echo "$candidate"
            return 0
        fi
    fi
    candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$candidate" ] && [ -x "$candidate/initdb" ]; then
        echo "$candidate"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

bindir() {
    local found
    if found="$(find_bindir)"; then
        echo "$found"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "no PostgreSQL binaries found; install the postgresql package"
    log "no PostgreSQL binaries found; installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    found="$(find_bindir)" || die "postgresql was installed but no initdb was found"
    echo "$found"
}

# The user the cluster runs as, and a prefix that runs a command as that user.
if [ "$(id -u)" -eq 0 ]; then
    if id postgres >/dev/null 2>&1; then
        run_user=postgres
    else
        run_user=nobody
    fi
else
    run_user="$(id -un)"
fi

# Runs a command as the cluster's user.
as_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$run_user" -- "$@"
    else
        "$@"
    fi
}

# Hands a path to the cluster's user (when we are root).
give() {
    [ "$(id -u)" -ne 0 ] || chown "$run_user" "$@"
}

[ -n "$dir" ] || usage
if [ "$cmd" = start ]; then
    mkdir -p "$dir"
fi
if [ -d "$dir" ]; then
    dir="$(cd "$dir" && pwd)"
fi
data="$dir/data"
logfile="$dir/postgres.log"
portfile="$dir/port"

# Unix socket paths are limited to about 107 bytes; fall back to a short directory.
sockdir="$dir"
if [ "${#dir}" -gt 90 ]; then
    sockdir="/tmp/strata-pg-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)"
fi

url_line() {
    echo "STRATA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$(cat "$portfile")/postgres"
}

is_running() {
    [ -f "$data/PG_VERSION" ] && as_user "$pg_ctl" -D "$data" status >/dev/null 2>&1
}

# A port nothing listens on now (a start that loses a race for it is retried).
free_port() {
    local port
    if command -v python3 >/dev/null 2>&1 &&
        port="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null)"; then
        echo "$port"
        return 0
    fi
    while :; do
        port=$((20000 + RANDOM % 40000))
        ss -ltnH "sport = :$port" 2>/dev/null | grep -q . || { echo "$port"; return 0; }
    done
}

init_cluster() {
    log "initializing a cluster in $data (as $run_user)"
    rm -rf "$data"
    mkdir -p "$data" "$sockdir"
    give "$dir" "$data" "$sockdir"
    as_user test -w "$data" ||
        die "$run_user cannot reach $data; choose a DIR whose parents others may enter (e.g. under /tmp)"
    chmod 700 "$data"
    as_user "$bin/initdb" --pgdata="$data" --auth=trust --username=postgres \
        --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >>"$data/postgresql.conf" <<EOF

# scripts/postgres.sh: a throwaway test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
max_connections = 200
EOF
    if [ "${PG_DURABLE:-0}" = 1 ]; then
        # benchmarks: commits wait for the WAL to reach the disk, as in production
        echo "fsync = on" >>"$data/postgresql.conf"
    else
        printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$data/postgresql.conf"
    fi
    enable_tls
}

# TLS with a throwaway CA (when openssl is there), so that clients can test sslmode=require
# and verify-full: the CA is DIR/data/ca.pem, also named by the server's ssl_ca_file.
enable_tls() {
    if ! command -v openssl >/dev/null 2>&1; then
        log "no openssl: the cluster runs without TLS"
        return 0
    fi
    local tmp
    tmp="$(mktemp -d)"
    (
        cd "$tmp"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj "/CN=strata test CA" -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile ext.cnf -out server.crt
    ) >"$dir/tls.log" 2>&1 || {
        cat "$dir/tls.log" >&2
        rm -rf "$tmp"
        die "making the test certificates failed"
    }
    cp "$tmp/ca.pem" "$tmp/server.crt" "$tmp/server.key" "$data/"
    rm -rf "$tmp"
    chmod 600 "$data/server.key"
    chmod 644 "$data/ca.pem" "$data/server.crt"
    give "$data/ca.pem" "$data/server.crt" "$data/server.key"
    cat >>"$data/postgresql.conf" <<EOF
ssl = on
ssl_ca_file = 'ca.pem'
EOF
}

start_cluster() {
    local attempt port
    touch "$logfile"
    mkdir -p "$sockdir"
    give "$logfile" "$sockdir"
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        if as_user "$pg_ctl" -D "$data" -l "$logfile" -w -t 60 \
            -o "-p $port" start >&2; then
            echo "$port" >"$portfile"
            return 0
        fi
        log "start on port $port failed (attempt $attempt); see $logfile"
    done
    tail -n 20 "$logfile" >&2 || true
    die "the cluster in $data would not start"
}

case "$cmd" in
start)
    bin="$(bindir)"
    pg_ctl="$bin/pg_ctl"
    if is_running && [ -f "$portfile" ]; then
        log "already running in $data"
        url_line
        exit 0
    fi
    [ -f "$data/PG_VERSION" ] || init_cluster
    start_cluster
    url_line
    ;;
url)
    bin="$(bindir)"
    pg_ctl="$bin/pg_ctl"
    is_running && [ -f "$portfile" ] || die "no cluster is running in $data"
    url_line
    ;;
stop | destroy)
    if [ ! -f "$data/PG_VERSION" ]; then
        log "no cluster in $data; nothing to stop"
        [ "$cmd" != destroy ] || rm -rf "$dir"
        exit 0
    fi
    bin="$(bindir)"
    pg_ctl="$bin/pg_ctl"
    if is_running; then
        as_user "$pg_ctl" -D "$data" -m fast -w stop >&2
    else
        log "the cluster in $data is not running"
    fi
    if [ "$cmd" = destroy ]; then
        rm -rf "$dir"
        [ "$sockdir" = "$dir" ] || rm -rf "$sockdir"
        log "removed $dir"
    fi
    ;;
*)
    usage
    ;;
esac
