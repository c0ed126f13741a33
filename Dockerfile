# syntax=docker/dockerfile:1
#
# The `strata` binary in a small Debian image.
#
#   docker build -t strata .
#   docker run --rm -p 9092:9092 strata dev
#
# One image serves every role: the subcommand picks it (`strata dev`, `strata metadata`,
# `strata agent`, `strata topic`). The Terraform in terraform/ starts the ECS tasks through
# small shell entrypoints that use curl and jq from this image.

# --- build -----------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

WORKDIR /src
COPY . .

# protox compiles the protos (no protoc needed); rusqlite bundles SQLite, built with the
# image's C compiler. The cache mounts keep the registry and target dir across builds;
# the binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p strata --locked \
    && install -m 0755 target/release/strata /usr/local/bin/strata

# --- runtime ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: TLS to S3 and other AWS endpoints (rustls with the system roots).
# curl, jq: the ECS entrypoints read the task metadata endpoint and build the store URL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl jq \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 strata \
    && useradd --system --uid 10001 --gid strata --home-dir /var/lib/strata \
        --shell /usr/sbin/nologin strata \
    && install -d -o strata -g strata -m 0750 /var/lib/strata

COPY --from=builder /usr/local/bin/strata /usr/local/bin/strata

USER 10001:10001
WORKDIR /var/lib/strata

# Listen on every interface inside the container; `strata dev` keeps its data here.
ENV STRATA_KAFKA_LISTEN=0.0.0.0:9092 \
    STRATA_METADATA_LISTEN=0.0.0.0:9093 \
    STRATA_DATA_DIR=/var/lib/strata

# Kafka (agent), metadata gRPC, HTTP metrics/health of the agent and of the metadata
# service (the HTTP endpoints are planned).
EXPOSE 9092 9093 9095 9096

# No HEALTHCHECK: the port to probe depends on the subcommand, so the orchestrator defines
# it (the ECS task definitions in terraform/ check 9092 or 9093).
#checkov:skip=CKV_DOCKER_2:The port to probe depends on the subcommand; the ECS task definitions define the health checks.
ENTRYPOINT ["strata"]
CMD ["--help"]
