#!/usr/bin/env bash
# Starts the local stack on 127.0.0.1, idempotently: the tansu broker
# (persistent sqlite storage), ClickHouse over HTTP, then creates the topics
# and applies the ClickHouse migrations. Already-running parts are left alone.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/install.sh"

# --- broker ---------------------------------------------------------------
# tansu_store.py adds the indexes tansu's own compaction and header lookups
# lack (see the script): without them the 10-minute compaction pass stalls
# the broker long enough to expire every consumer session. Building them
# takes the store's write lock, so it runs only while no client is
# connected: before tansu opens an existing store, or right after it
# created a fresh one.
TANSU_DB="$CDR_STATE_DIR/data/tansu/tansu.db"
TANSU_STORE=(python3 "$(dirname "$0")/tansu_store.py")
if pid_alive "$CDR_STATE_DIR/pids/tansu.pid"; then
  log "tansu already running (pid $(cat "$CDR_STATE_DIR/pids/tansu.pid"))"
  "${TANSU_STORE[@]}" --check "$TANSU_DB" ||
    log "restart the broker to index its store: deploy/local/stop.sh; deploy/local/start.sh"
  started=0
else
  log "starting tansu on 127.0.0.1:$CDR_KAFKA_PORT"
  mkdir -p "$CDR_STATE_DIR/data/tansu"
  [ ! -s "$TANSU_DB" ] || "${TANSU_STORE[@]}" "$TANSU_DB" || log "tansu store not indexed yet"
  (cd "$CDR_STATE_DIR/data/tansu" && exec setsid "$TANSU_BIN" broker \
      --storage-engine "sqlite://tansu.db" \
      --listener-url "tcp://127.0.0.1:$CDR_KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$CDR_KAFKA_PORT" \
      >>"$CDR_STATE_DIR/logs/tansu.log" 2>&1 </dev/null) &
  echo $! >"$CDR_STATE_DIR/pids/tansu.pid"
  started=1
fi
wait_for "tansu port" 60 bash -c "exec 3<>/dev/tcp/127.0.0.1/$CDR_KAFKA_PORT"
[ "$started" = 0 ] || wait_for "tansu store indexes" 30 "${TANSU_STORE[@]}" "$TANSU_DB"

# --- ClickHouse -------------------------------------------------------------
CH_DIR="$CDR_STATE_DIR/clickhouse"
mkdir -p "$CH_DIR/data"
# Users (clickhouse-config.xml): cdr_admin, cdr_writer, cdr_finance,
# cdr_grafana; `default` is reduced to what the embedded server's own
# session needs (see the config). Each
# password is CDR_CH_<ROLE>_PASSWORD when set, else the content of
# $CDR_SECRETS_DIR/cdr_<role>.password, generated once (random, mode 600).
# Only SHA-256 hashes go into the rendered config; nothing is logged.
ch_password() {
  local var="CDR_CH_${1^^}_PASSWORD" f="$CDR_SECRETS_DIR/cdr_$1.password"
  if [ -n "${!var:-}" ]; then printf '%s' "${!var}"; return; fi
  [ -s "$f" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$f")
  cat "$f"
}
ch_sha256() { ch_password "$1" | sha256sum | cut -d' ' -f1; }
(umask 077; mkdir -p "$CDR_SECRETS_DIR")
(umask 077; sed -e "s/@HTTP_PORT@/$CDR_CH_HTTP_PORT/" \
    -e "s/@ADMIN_PASSWORD_SHA256@/$(ch_sha256 admin)/" \
    -e "s/@WRITER_PASSWORD_SHA256@/$(ch_sha256 writer)/" \
    -e "s/@FINANCE_PASSWORD_SHA256@/$(ch_sha256 finance)/" \
    -e "s/@GRAFANA_PASSWORD_SHA256@/$(ch_sha256 grafana)/" \
    "$(dirname "$0")/clickhouse-config.xml" >"$CH_DIR/config.xml.tmp" &&
  mv "$CH_DIR/config.xml.tmp" "$CH_DIR/config.xml")
if pid_alive "$CDR_STATE_DIR/pids/clickhouse.pid"; then
  log "ClickHouse already running (pid $(cat "$CDR_STATE_DIR/pids/clickhouse.pid"))"
else
  log "starting ClickHouse (chdb-core $CHDB_VERSION) on 127.0.0.1:$CDR_CH_HTTP_PORT"
  (cd "$CH_DIR" && exec setsid "$CH_PYTHON" "$CDR_REPO/deploy/local/chserve.py" "$CH_DIR/data" \
      >>"$CDR_STATE_DIR/logs/clickhouse.log" 2>&1 </dev/null) &
  echo $! >"$CDR_STATE_DIR/pids/clickhouse.pid"
fi
# /ping needs no login (`default` may read nothing).
wait_for "ClickHouse HTTP" 90 curl -sf "$CDR_CLICKHOUSE_URL/ping"

# --- topics and tables ------------------------------------------------------
CDRCTL="$CDR_BIN_DIR/cdrctl"
wait_for "topics" 60 "$CDRCTL" topics
"$CDRCTL" migrate
log "stack up: kafka $CDR_KAFKA_BROKERS, clickhouse $CDR_CLICKHOUSE_URL"
