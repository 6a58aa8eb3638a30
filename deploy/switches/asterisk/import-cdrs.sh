#!/usr/bin/env bash
# Ships Asterisk's rotated CDR files to the pipeline (run from cron after
# logrotate). A file whose every record was taken is moved to done/; a file
# with refused rows keeps them in <file>.rejects.jsonl for the operator
# (exit code 3 from cdrctl import), and the good rows are already in.
# Importing a file twice bills every call once.
set -euo pipefail
SPOOL="${SPOOL:-/var/log/asterisk/cdr-custom/outgoing}"
SWITCH="${SWITCH:-ast-nyc-1}"
CONFIG="${CONFIG:-/etc/cdr-pipeline/ingest.toml}"
mkdir -p "$SPOOL/done"
for f in "$SPOOL"/*.csv; do
  [ -e "$f" ] || continue
  if cdrctl import --format asterisk-csv --config "$CONFIG" --switch "$SWITCH" \
       --rejects "$f.rejects.jsonl" "$f"; then
    mv "$f" "$SPOOL/done/"
    rm -f "$f.rejects.jsonl"
  fi
done
