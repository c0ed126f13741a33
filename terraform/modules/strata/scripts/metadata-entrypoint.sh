# Starts `strata metadata` in an ECS task, against the RDS PostgreSQL instance.
# ecs_metadata.tf passes this file to `/bin/sh -c`; it needs jq (in the image).
#
# ECS injects DB_USERNAME and DB_PASSWORD from the RDS-managed secret; the task definition
# sets DB_HOST, DB_PORT, DB_NAME and DB_OPTIONS. This builds
#   STRATA_STORE=postgres://<user>:<password>@<host>:<port>/<db>?<options>
# with user and password percent-encoded (a generated password may contain characters
# that are special in URLs), unless STRATA_STORE is set already. Schema migrations run
# when the metadata service starts.
#
# Several metadata tasks share the database: one holds the leader lease, the others stand
# by and name the leader to agents by its advertised URL. Unless
# STRATA_METADATA_ADVERTISED_URL is set, it is http://<task IP>:<gRPC port>, the task IP
# read from the ECS task metadata endpoint (v4; needs curl).
set -eu

log() { echo "metadata-entrypoint: $*" >&2; }

if [ -z "${STRATA_STORE:-}" ]; then
    for name in DB_USERNAME DB_PASSWORD DB_HOST DB_NAME; do
        eval "value=\${$name:-}"
        if [ -z "$value" ]; then
            log "$name is not set"
            exit 1
        fi
    done

    urlencode() { jq -rn --arg v "$1" '$v | @uri'; }

    store="postgres://$(urlencode "$DB_USERNAME"):$(urlencode "$DB_PASSWORD")@$DB_HOST:${DB_PORT:-5432}/$(urlencode "$DB_NAME")"
    if [ -n "${DB_OPTIONS:-}" ]; then
        store="$store?$DB_OPTIONS"
    fi
    export STRATA_STORE="$store"
    log "store=postgres://$DB_USERNAME:***@$DB_HOST:${DB_PORT:-5432}/$DB_NAME"
fi
unset DB_PASSWORD

if [ -z "${STRATA_METADATA_ADVERTISED_URL:-}" ] && [ -n "${ECS_CONTAINER_METADATA_URI_V4:-}" ]; then
    task_ip="$(curl --silent --show-error --fail --max-time 5 --retry 5 --retry-delay 1 \
        --retry-connrefused "$ECS_CONTAINER_METADATA_URI_V4" |
        jq -r '.Networks[0].IPv4Addresses[0] // empty')"
    if [ -z "$task_ip" ]; then
        log "cannot learn the task IP from the task metadata endpoint"
        exit 1
    fi
    export STRATA_METADATA_ADVERTISED_URL="http://$task_ip:${STRATA_METADATA_LISTEN##*:}"
    log "advertised url=$STRATA_METADATA_ADVERTISED_URL"
fi

exec strata metadata
