#!/usr/bin/env bash
# Stops only what these scripts started, by pid file: services first, then
# ClickHouse and the broker. SIGTERM, then SIGKILL after a grace period.
set -uo pipefail
source "$(dirname "$0")/env.sh"
stop_pid() {
  local f="$1" name
  name="$(basename "$f" .pid)"
  if pid_alive "$f"; then
    local pid; pid="$(cat "$f")"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do pid_alive "$f" || break; sleep 0.2; done
    pid_alive "$f" && { log "$name did not stop; SIGKILL"; kill -KILL "$pid" 2>/dev/null; }
    log "stopped $name ($pid)"
  fi
  rm -f "$f"
}
for f in "$CDR_STATE_DIR"/pids/svc-*.pid; do [ -e "$f" ] && stop_pid "$f"; done
if [ "${1:-}" != "--services-only" ]; then
  stop_pid "$CDR_STATE_DIR/pids/clickhouse.pid"
  stop_pid "$CDR_STATE_DIR/pids/tansu.pid"
fi
exit 0
