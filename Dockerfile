# syntax=docker/dockerfile:1
# One image for every service and cdrctl (the service is the command:
# `assembler /etc/cdr/assembler.toml`, `cdrctl migrate`, ...).
#   docker build -t cdr-pipeline .
# Build stage: the workspace in release mode. librdkafka is compiled from
# the rdkafka crate's bundled sources (C toolchain, OpenSSL for TLS/SASL).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && for b in assembler enricher rater detector kpi sink ingest cdrctl; do \
      cp "target/release/$b" /out/; \
    done

# Runtime stage: glibc, OpenSSL and the CA store (Kafka TLS uses the
# system store unless a CA file is configured), nothing else; non-root,
# and the root filesystem can be mounted read-only.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cdr \
 && useradd --system --uid 10001 --gid cdr --home-dir /srv/cdr --shell /usr/sbin/nologin cdr
COPY --from=build /out/ /usr/local/bin/
# Example reference data and configs (the local stack's): the relative paths
# in deploy/local/config/*.toml resolve from this working directory.
# Production mounts its own decks and accounts over /srv/cdr/data.
WORKDIR /srv/cdr
COPY deploy/local/data/ /srv/cdr/deploy/local/data/
COPY deploy/local/config/ /srv/cdr/deploy/local/config/
USER 10001:10001
ENV CDR__STAGE__METRICS_LISTEN=0.0.0.0:9100 \
    CDR__STAGE__KAFKA__JOIN_DELAY_MS=0
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/cdrctl", "probe", "http://127.0.0.1:9100/livez"]
CMD ["cdrctl", "--help"]
