# shellcheck shell=bash
# Shared by the scripts that run a throwaway test server (seaweedfs.sh, localstack.sh):
# logging, the `start|stop DIR` arguments, and stopping the server by its pid file.
#
# The sourcing script sets SERVER_NAME, and defines `running_pid` (prints the pid of DIR's
# server, or nothing, checking the process really is that server) before calling
# `stop_server`; it reads PIDFILE and STOP_TIMEOUT.

log() { echo "[$SERVER_NAME] $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

# Sets `cmd` (start or stop) and `DIR` (absolute, created) from the script's arguments.
parse_server_args() {
    [ $# -eq 2 ] || usage
    cmd="$1"
    case "$cmd" in start | stop) ;; *) usage ;; esac
    mkdir -p "$2"
    DIR="$(cd "$2" && pwd)"
}

# Stops DIR's server: TERM (after CONT, so a SIGSTOPped one sees it), then KILL after
# STOP_TIMEOUT seconds. Does nothing when it is not running.
stop_server() {
    local pid
    pid="$(running_pid)"
    if [ -z "$pid" ]; then
        log "not running (DIR $DIR)"
        rm -f "$PIDFILE"
        return
    fi
    log "stopping pid $pid"
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "still running after ${STOP_TIMEOUT}s; killing pid $pid"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    rm -f "$PIDFILE"
}
