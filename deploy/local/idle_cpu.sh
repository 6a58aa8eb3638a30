#!/usr/bin/env bash
# Prints each running service's CPU use over a window (default 60 s) as a
# share of one core, from /proc (utime + stime of the whole process).
# Run it on an idle stack: `make services && deploy/local/idle_cpu.sh 120`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
secs="${1:-60}"
hz=$(getconf CLK_TCK)
declare -A t0
svcs=(assembler enricher rater detector kpi sink ingest)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for s in "${svcs[@]}"; do
  pidf="$CDR_STATE_DIR/pids/svc-$s.pid"
  pid_alive "$pidf" || { echo "$s is not running" >&2; exit 1; }
  t0[$s]=$(ticks "$(cat "$pidf")")
done
sleep "$secs"
for s in "${svcs[@]}"; do
  d=$(( $(ticks "$(cat "$CDR_STATE_DIR/pids/svc-$s.pid")") - ${t0[$s]} ))
  awk -v s="$s" -v d="$d" -v hz="$hz" -v secs="$secs" \
    'BEGIN { printf "%-10s %6.2f%% of a core (%.2f CPU-s in %d s)\n", s, 100 * d / hz / secs, d / hz, secs }'
done
