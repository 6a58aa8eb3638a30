#!/usr/bin/env bash
# Starts every pipeline service in the background with a pid file and a log
# under $CDR_STATE_DIR (idempotent: running services are left alone). A
# service reads deploy/local/config/<service>.toml when present (paths in it
# are relative to the repository root, the services' working directory).
# Usage: services.sh [service...]   (default: all seven)
# CDR_INSTANCE=N (N > 1) starts an extra instance of each named service in
# the same consumer group (pid file svc-<service>-N.pid, log <service>-N.log,
# metrics port CDR_METRICS_BASE + 7*(N-1) + index; the ingest HTTP endpoint
# on CDR_INGEST_HTTP_PORT + N-1), e.g. for rebalance tests.
# CDR_ENV_<service>="K=V K2=V2" adds config overrides for that service only
# (e.g. CDR_ENV_detector="CDR__ROUTE__ALLOWED_LATENESS_MS=900000").
set -euo pipefail
source "$(dirname "$0")/env.sh"
ALL=(assembler enricher rater detector kpi sink ingest)
svcs=("$@"); [ ${#svcs[@]} -eq 0 ] && svcs=("${ALL[@]}")
# The decks the rater is about to load go to ClickHouse first (rate_decks,
# rate_deck_rows), so finance can join every rated CDR to the row that
# priced it. Re-publishing is idempotent (ReplacingMergeTree).
# Least privilege: the sink is the only service with ClickHouse
# credentials (cdr_writer: SELECT and INSERT on cdr.*, by a password file,
# never argv); every other service starts with no ClickHouse variables.
writer_env=(CDR_CLICKHOUSE_USER=cdr_writer CDR_CLICKHOUSE_PASSWORD_FILE="$CDR_SECRETS_DIR/cdr_writer.password")
[ -n "${CDR_CH_WRITER_PASSWORD:-}" ] && writer_env+=(CDR_CLICKHOUSE_PASSWORD="$CDR_CH_WRITER_PASSWORD")
no_ch_env=(CDR_CLICKHOUSE_USER CDR_CLICKHOUSE_PASSWORD CDR_CLICKHOUSE_PASSWORD_FILE
  CDR_CH_ADMIN_PASSWORD CDR_CH_WRITER_PASSWORD CDR_CH_FINANCE_PASSWORD CDR_CH_GRAFANA_PASSWORD)
inst="${CDR_INSTANCE:-1}"
sfx=""; [ "$inst" -gt 1 ] && sfx="-$inst"
for s in "${svcs[@]}"; do
  if [ "$s" = rater ] && [ -f "$CDR_REPO/deploy/local/config/rater.toml" ]; then
    (cd "$CDR_REPO" && unset "${no_ch_env[@]}" && export "${writer_env[@]}" &&
      "$CDR_BIN_DIR/cdrctl" deck publish --rater-config deploy/local/config/rater.toml 2>&1 | tail -1)
  fi
done
for s in "${svcs[@]}"; do
  idx=0; for i in "${!ALL[@]}"; do [ "${ALL[$i]}" = "$s" ] && idx=$i; done
  pidf="$CDR_STATE_DIR/pids/svc-$s$sfx.pid"
  if pid_alive "$pidf"; then log "$s$sfx already running"; continue; fi
  port=$((CDR_METRICS_BASE + 7 * (inst - 1) + idx))
  http=()
  [ "$s" = ingest ] && http=("CDR__HTTP__LISTEN=127.0.0.1:$((CDR_INGEST_HTTP_PORT + inst - 1))")
  cfg=()
  [ -f "$CDR_REPO/deploy/local/config/$s.toml" ] && cfg=("$CDR_REPO/deploy/local/config/$s.toml")
  extra_var="CDR_ENV_$s"; read -ra extra <<<"${!extra_var:-}"
  ch=(); [ "$s" = sink ] && ch=("${writer_env[@]}")
  (cd "$CDR_REPO" && unset "${no_ch_env[@]}" && export CDR__STAGE__METRICS_LISTEN="127.0.0.1:$port" "${ch[@]}" "${http[@]}" "${extra[@]}" && exec setsid "$CDR_BIN_DIR/$s" "${cfg[@]}" \
    >>"$CDR_STATE_DIR/logs/$s$sfx.log" 2>&1 </dev/null) &
  echo $! >"$pidf"
  log "started $s$sfx (pid $!, metrics http://127.0.0.1:$port/metrics)"
done
