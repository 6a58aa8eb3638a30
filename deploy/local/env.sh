# Shared settings for the local stack. Source it; every value can be
# overridden from the environment.
#   CDR_STATE_DIR     pid files, logs and data (git-ignored)   default: <repo>/.state
#   CDR_CACHE_DIR     tansu binary and the ClickHouse venv      default: ~/.cache/cdr-pipeline
#   CDR_KAFKA_PORT    broker port on 127.0.0.1                  default: 9092
#   CDR_CH_HTTP_PORT  ClickHouse HTTP port on 127.0.0.1         default: 8123
#   CDR_METRICS_BASE  first service metrics port (7 in a row)   default: 9101
#   CDR_INGEST_HTTP_PORT  where switches POST (ingest service)   default: 9180
#   CDR_SECRETS_DIR   generated ClickHouse passwords (mode 600) default: $CDR_STATE_DIR/secrets
#   CDR_CH_ADMIN_PASSWORD / CDR_CH_WRITER_PASSWORD / CDR_CH_FINANCE_PASSWORD /
#   CDR_CH_GRAFANA_PASSWORD
#                     passwords of the ClickHouse users cdr_admin, cdr_writer,
#                     cdr_finance, cdr_grafana; unset = generated into
#                     CDR_SECRETS_DIR
#   CDR_CLICKHOUSE_USER / CDR_CLICKHOUSE_PASSWORD_FILE
#                     whom cdrctl and the tests log in as: cdr_admin and its
#                     secret file. services.sh gives the sink cdr_writer and
#                     every other service no ClickHouse credentials at all.
CDR_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CDR_REPO
export CDR_STATE_DIR="${CDR_STATE_DIR:-$CDR_REPO/.state}"
export CDR_CACHE_DIR="${CDR_CACHE_DIR:-$HOME/.cache/cdr-pipeline}"
export CDR_KAFKA_PORT="${CDR_KAFKA_PORT:-9092}"
export CDR_CH_HTTP_PORT="${CDR_CH_HTTP_PORT:-8123}"
export CDR_METRICS_BASE="${CDR_METRICS_BASE:-9101}"
export CDR_INGEST_HTTP_PORT="${CDR_INGEST_HTTP_PORT:-9180}"
export CDR_SECRETS_DIR="${CDR_SECRETS_DIR:-$CDR_STATE_DIR/secrets}"
export CDR_KAFKA_BROKERS="${CDR_KAFKA_BROKERS:-127.0.0.1:$CDR_KAFKA_PORT}"
export CDR_CLICKHOUSE_URL="${CDR_CLICKHOUSE_URL:-http://127.0.0.1:$CDR_CH_HTTP_PORT}"
export CDR_CLICKHOUSE_USER="${CDR_CLICKHOUSE_USER:-cdr_admin}"
if [ -n "${CDR_CH_ADMIN_PASSWORD:-}" ] && [ -z "${CDR_CLICKHOUSE_PASSWORD:-}" ]; then
  export CDR_CLICKHOUSE_PASSWORD="$CDR_CH_ADMIN_PASSWORD"
fi
export CDR_CLICKHOUSE_PASSWORD_FILE="${CDR_CLICKHOUSE_PASSWORD_FILE:-$CDR_SECRETS_DIR/cdr_admin.password}"
export TANSU_VERSION="${TANSU_VERSION:-}"
export CHDB_VERSION="${CHDB_VERSION:-26.9.0}"
export TANSU_BIN="$CDR_CACHE_DIR/tansu/bin/tansu"
export CH_PYTHON="$CDR_CACHE_DIR/venv/bin/python"
export CDR_BIN_DIR="${CDR_BIN_DIR:-$CDR_REPO/target/release}"
mkdir -p "$CDR_STATE_DIR"/{pids,logs,data}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# pid_alive FILE -> 0 when the pid in FILE is a running process (a killed
# process can linger as a zombie until reaped: that counts as dead).
pid_alive() {
  [ -f "$1" ] || return 1
  local p; p="$(cat "$1")"
  [ -n "$p" ] && [ -r "/proc/$p/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status"
}

# wait_for DESCRIPTION SECONDS COMMAND...
wait_for() {
  local what="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then log "timed out waiting for $what"; return 1; fi
    sleep 0.3
  done
}
