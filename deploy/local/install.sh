#!/usr/bin/env bash
# Installs what the local stack needs, once, into $CDR_CACHE_DIR (reused by
# later runs and sessions): the tansu broker from crates.io and ClickHouse
# (chdb-core from PyPI) in a Python venv. A fresh install takes ~15 minutes,
# most of it compiling tansu.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if [ ! -x "$TANSU_BIN" ]; then
  log "installing tansu (cargo install, features dynostore+libsql) into $CDR_CACHE_DIR/tansu"
  ver=()
  [ -n "$TANSU_VERSION" ] && ver=(--version "$TANSU_VERSION")
  cargo install tansu "${ver[@]}" --locked --features dynostore,libsql --root "$CDR_CACHE_DIR/tansu" >&2
fi

if ! "$CH_PYTHON" -c "import chdb" 2>/dev/null; then
  log "installing chdb-core==$CHDB_VERSION into $CDR_CACHE_DIR/venv"
  python3 -m venv "$CDR_CACHE_DIR/venv"
  "$CDR_CACHE_DIR/venv/bin/pip" install --quiet --no-deps "chdb-core==$CHDB_VERSION" >&2
fi
log "installed: $("$TANSU_BIN" --version 2>/dev/null | head -1), chdb-core $CHDB_VERSION"
