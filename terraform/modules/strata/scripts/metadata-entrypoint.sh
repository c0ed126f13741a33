# Starts `strata metadata` in an ECS task, against the RDS PostgreSQL instance.
# ecs_metadata.tf passes this file to `/bin/sh -c`; it needs jq (in the image).
#
# ECS injects DB_USERNAME and DB_PASSWORD from the RDS-managed secret; the task definition
# sets DB_HOST, DB_PORT, DB_NAME and DB_OPTIONS. This builds
#   STRATA_STORE=postgres://<user>:<password>@<host>:<port>/<db>?<options>
# with user and password percent-encoded (a generated password may contain characters
# that are special in URLs), unless STRATA_STORE is set already. Schema migrations run
# when the metadata service starts.
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

exec strata metadata
