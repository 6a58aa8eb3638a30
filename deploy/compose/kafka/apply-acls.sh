#!/usr/bin/env bash
# Applies deploy/kafka/acls.tsv to the broker with kafka-acls.sh, as the
# super user cdr-admin. Runs in the apache/kafka image as the one-shot
# compose service `kafka-acls` (see docker-compose.yml), before `init` and
# every pipeline service.
#
# Additive and idempotent: adding an ACL that exists is a no-op. An ACL
# removed from the table is NOT removed from the broker; remove it by hand
# (kafka-acls.sh --remove, same flags) - the README says how.
#
# Environment (set by the compose file):
#   CDR_ACL_FILE           the table (TAB-separated, header, # comments)
#   CDR_ACL_BOOTSTRAP      bootstrap servers, e.g. kafka:9092
#   CDR_ACL_CLIENT_CONFIG  admin client properties (SASL as cdr-admin)
#   CDR_ACL_TOOL           kafka-acls.sh (default: the image's; check.sh
#                          substitutes a stub that records the calls)
set -euo pipefail

file=${CDR_ACL_FILE:?CDR_ACL_FILE is not set}
bootstrap=${CDR_ACL_BOOTSTRAP:?CDR_ACL_BOOTSTRAP is not set}
client_config=${CDR_ACL_CLIENT_CONFIG:?CDR_ACL_CLIENT_CONFIG is not set}
acls=${CDR_ACL_TOOL:-/opt/kafka/bin/kafka-acls.sh}
# The tools' JVM needs little; never inherit a broker's settings.
export KAFKA_HEAP_OPTS="-Xmx256m"
unset KAFKA_OPTS

die() { echo "apply-acls: $*" >&2; exit 1; }
[ -r "$file" ] || die "cannot read $file"
[ -r "$client_config" ] || die "cannot read $client_config"

# Validate the whole table before touching the broker, then print one line
# per (principal, operation, resource type, pattern type) with its
# resources: one kafka-acls.sh call (one JVM) each.
plan=$(awk -F'\t' '
  /^[ \t]*(#|$)/ { next }
  !header {
    if ($0 != "principal\toperation\tresource_type\tpattern_type\tresource")
      { printf "line %d: expected the header line\n", NR > "/dev/stderr"; bad = 1; exit 1 }
    header = 1; next
  }
  NF != 5 { printf "line %d: %d fields, want 5\n", NR, NF > "/dev/stderr"; bad = 1; next }
  $1 !~ /^User:[A-Za-z0-9._-]+$/ { printf "line %d: principal %s\n", NR, $1 > "/dev/stderr"; bad = 1; next }
  $2 !~ /^(Read|Write|Describe)$/ { printf "line %d: operation %s\n", NR, $2 > "/dev/stderr"; bad = 1; next }
  $3 !~ /^(topic|group)$/ { printf "line %d: resource type %s\n", NR, $3 > "/dev/stderr"; bad = 1; next }
  $4 !~ /^(literal|prefixed)$/ { printf "line %d: pattern type %s\n", NR, $4 > "/dev/stderr"; bad = 1; next }
  $5 !~ /^[A-Za-z0-9._-]+$/ { printf "line %d: resource %s\n", NR, $5 > "/dev/stderr"; bad = 1; next }
  {
    k = $1 "\t" $2 "\t" $3 "\t" $4
    if (!(k in res)) order[++n] = k
    res[k] = res[k] " " $5
    count++
  }
  END {
    if (bad || !header) exit 1
    for (i = 1; i <= n; i++) print order[i] "\t" substr(res[order[i]], 2)
    printf "apply-acls: %d ACLs in the table\n", count > "/dev/stderr"
  }
' "$file") || die "$file is invalid; nothing applied"

applied=0
while IFS=$'\t' read -r principal operation rtype ptype resources; do
  args=(--bootstrap-server "$bootstrap" --command-config "$client_config"
        --add --allow-principal "$principal" --operation "$operation"
        --resource-pattern-type "$ptype")
  for r in $resources; do
    args+=("--$rtype" "$r")
  done
  ok=""
  for attempt in 1 2 3 4 5; do
    if out=$("$acls" "${args[@]}" 2>&1); then ok=1; break; fi
    printf '%s\n' "$out" | tail -n 5 >&2
    echo "apply-acls: $principal $operation $rtype ($ptype): attempt $attempt failed" >&2
    sleep 5
  done
  [ -n "$ok" ] || die "$principal $operation $rtype ($ptype) $resources: kafka-acls.sh failed"
  applied=$((applied + 1))
done <<<"$plan"

echo "apply-acls: $applied kafka-acls.sh calls from $file applied to $bootstrap"
