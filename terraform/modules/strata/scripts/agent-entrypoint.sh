# Starts `strata agent` in an ECS task that uses the awsvpc network mode (Fargate).
# ecs_agent.tf passes this file to `/bin/sh -c`; it needs curl and jq (both in the image).
#
# From the task metadata endpoint (v4) it learns the task's private IP and availability
# zone, and exports
#   STRATA_ADVERTISED_ADDR    <task IP>:<Kafka port>: clients connect to the agent itself
#   STRATA_NODE_ID            the low 24 bits of the task IP: unique among the agents
#                             running at one time (a VPC CIDR block is at most a /16)
#   STRATA_AVAILABILITY_ZONE  the task's zone, reported to clients as the broker's rack
#   STRATA_CACHE_ADVERTISED_ADDR  <task IP>:<cache port>, when STRATA_CACHE_LISTEN is set
#                             (the agent serves the cache role; peers reach it there)
# unless they are set already, then replaces itself with `strata agent`.
set -eu

log() { echo "agent-entrypoint: $*" >&2; }

metadata_uri="${ECS_CONTAINER_METADATA_URI_V4:-}"
if [ -z "$metadata_uri" ]; then
    log "ECS_CONTAINER_METADATA_URI_V4 is not set: not an ECS task on Fargate platform 1.4.0 or later"
    exit 1
fi

fetch() {
    curl --silent --show-error --fail --max-time 5 \
        --retry 5 --retry-delay 1 --retry-connrefused "$1"
}

container_json="$(fetch "$metadata_uri")"
task_json="$(fetch "$metadata_uri/task")"

task_ip="$(printf '%s' "$container_json" | jq -r '.Networks[0].IPv4Addresses[0] // empty')"
zone="$(printf '%s' "$task_json" | jq -r '.AvailabilityZone // empty')"

if [ -z "$task_ip" ]; then
    log "the task metadata has no IPv4 address (is the network mode awsvpc?)"
    exit 1
fi

kafka_port="${STRATA_KAFKA_LISTEN##*:}"
node_id="$(printf '%s\n' "$task_ip" | awk -F. '{ printf "%d", ($2 * 65536) + ($3 * 256) + $4 }')"

export STRATA_ADVERTISED_ADDR="${STRATA_ADVERTISED_ADDR:-$task_ip:$kafka_port}"
export STRATA_NODE_ID="${STRATA_NODE_ID:-$node_id}"
if [ -n "${STRATA_CACHE_LISTEN:-}" ]; then
    export STRATA_CACHE_ADVERTISED_ADDR="${STRATA_CACHE_ADVERTISED_ADDR:-$task_ip:${STRATA_CACHE_LISTEN##*:}}"
fi
if [ -n "$zone" ]; then
    export STRATA_AVAILABILITY_ZONE="${STRATA_AVAILABILITY_ZONE:-$zone}"
fi

log "advertised=$STRATA_ADVERTISED_ADDR node_id=$STRATA_NODE_ID zone=${zone:-unknown} cache=${STRATA_CACHE_ADVERTISED_ADDR:-off}"
exec strata agent
