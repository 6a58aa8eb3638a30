#!/usr/bin/env bash
# Checks the cdr-pipeline Helm chart without a cluster:
#   1. helm lint --strict (values.schema.json included) with the default
#      values, with ci-values.yaml (every optional feature on) and with
#      chart-made Secrets (SASL passwords and the ClickHouse writer password
#      from the values);
#   2. helm template of each, every rendered document validated by
#      kubernetes-validate --strict against the oldest Kubernetes the chart
#      supports and the newest the validator knows (prometheus-operator
#      kinds have no schema there: check_rendered.py only checks they are
#      rendered exactly when enabled);
#   3. check_rendered.py's assertions on each rendering (only the sink has
#      CDR__CLICKHOUSE__ settings, no Secret value outside a Secret, probes,
#      security context, one PDB / Service per service, the hook, ...);
#   4. values the chart must refuse (more replicas than partitions, a data
#      volume with the example-data config, SASL without passwords, a
#      mistyped key) make helm fail.
# Exits non-zero on the first failing step. Tools: deploy/lint/install.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
chart="$here/cdr-pipeline"
bin="${CDR_CACHE_DIR:-$HOME/.cache/cdr-pipeline}/lint/bin"
helm="$bin/helm"
kv="$bin/kubernetes-validate"
py="$bin/python3"
kube_versions=(1.25.0 1.37.0)
release=cdr-pipeline
namespace=cdr

for tool in "$helm" "$kv" "$py"; do
  if [ ! -x "$tool" ]; then
    echo "check.sh: $tool is missing (run deploy/lint/install.sh)" >&2
    exit 2
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# helm keeps its caches in the scratch directory, not in $HOME.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"

# Third value set: the chart makes the Secrets (lab installs). The passwords
# are long and distinct so check_rendered.py can search for them everywhere.
cat >"$work/values-chart-secrets.yaml" <<'EOF'
kafka:
  security:
    protocol: SASL_PLAINTEXT
  sasl:
    mechanism: SCRAM-SHA-256
    passwords:
      assembler: pw-assembler-7f3a9c
      enricher: pw-enricher-2b8d41
      rater: pw-rater-93e0aa
      detector: pw-detector-c4f217
      kpi: pw-kpi-5d6e08
      sink: pw-sink-a1b2c3
      ingest: pw-ingest-e9f0d4
      admin: pw-kafka-admin-0c1d2e
clickhouse:
  writer:
    password: pw-clickhouse-writer-77aa
EOF

step() { printf '== %s\n' "$*"; }

docs_total=0
validated_total=0
crd_total=0
cases=0

check_case() {
  local name="$1" flags="$2"
  shift 2
  step "$name: helm lint --strict"
  "$helm" lint --strict "$chart" "$@" >"$work/$name.lint" 2>&1 || {
    cat "$work/$name.lint"
    echo "check.sh: helm lint failed for $name" >&2
    return 1
  }
  step "$name: helm template"
  "$helm" template "$release" "$chart" --namespace "$namespace" "$@" >"$work/rendered-$name.yaml"
  step "$name: assertions"
  local summary
  # shellcheck disable=SC2086 # flags is a list of options
  summary="$("$py" "$here/check_rendered.py" "$work/rendered-$name.yaml" "$work/validate-$name.yaml" $flags)" || {
    echo "$summary"
    echo "check.sh: assertions failed for $name" >&2
    return 1
  }
  echo "   $summary"
  local docs validate crd
  docs="$(sed -n 's/.*documents=\([0-9]*\).*/\1/p' <<<"$summary")"
  validate="$(sed -n 's/.*validate=\([0-9]*\).*/\1/p' <<<"$summary")"
  crd="$(sed -n 's/.*crd=\([0-9]*\).*/\1/p' <<<"$summary")"
  local v out passed
  for v in "${kube_versions[@]}"; do
    step "$name: kubernetes-validate --strict -k $v"
    out="$("$kv" --strict -k "$v" "$work/validate-$name.yaml" 2>&1)" || {
      echo "$out" | grep -v '^INFO' || true
      echo "check.sh: kubernetes-validate failed for $name (Kubernetes $v)" >&2
      return 1
    }
    # A missing schema (mistyped apiVersion/kind) is only a WARN there: any
    # line but a pass fails, and every document must have passed.
    if grep -v '^INFO .* passed for resource ' <<<"$out" | grep -q .; then
      grep -v '^INFO .* passed for resource ' <<<"$out"
      echo "check.sh: kubernetes-validate reported problems for $name (Kubernetes $v)" >&2
      return 1
    fi
    passed="$(grep -c '^INFO .* passed for resource ' <<<"$out" || true)"
    if [ "$passed" -ne "$validate" ]; then
      echo "check.sh: $passed of $validate documents validated for $name (Kubernetes $v)" >&2
      return 1
    fi
    validated_total=$((validated_total + passed))
  done
  docs_total=$((docs_total + docs))
  crd_total=$((crd_total + crd))
  cases=$((cases + 1))
}

# Values the chart must refuse: helm template has to fail with the message.
refuses() {
  local why="$1" expect="$2"
  shift 2
  step "refuses: $why"
  if "$helm" template "$release" "$chart" --namespace "$namespace" "$@" >"$work/refused.out" 2>&1; then
    echo "check.sh: the chart rendered although $why" >&2
    return 1
  fi
  if ! grep -q -- "$expect" "$work/refused.out"; then
    cat "$work/refused.out"
    echo "check.sh: the chart refused ($why) without the expected message: $expect" >&2
    return 1
  fi
  refused=$((refused + 1))
}

check_case default ""
check_case ci "--monitoring --hpa --sasl" -f "$here/ci-values.yaml"
check_case chart-secrets "--sasl" -f "$work/values-chart-secrets.yaml"

refused=0
refuses "replicas exceed the input partitions" "exceeds inputPartitions" \
  --set services.sink.replicas=5
refuses "autoscaling may exceed the input partitions" "never scale past" \
  --set services.rater.autoscaling.enabled=true --set services.rater.autoscaling.maxReplicas=8
refuses "a data volume with the example-data config" "still names the image's example data" \
  --set services.rater.dataVolume.persistentVolumeClaim.claimName=decks
refuses "SASL without passwords" "needs a password for" \
  --set kafka.security.protocol=SASL_SSL
refuses "a mistyped value key (schema)" "Additional property replica is not allowed" \
  --set services.kpi.replica=3
refuses "a Kafka CA without TLS" "has no TLS" \
  --set kafka.security.caSecret.name=kafka-ca
refuses "an unknown SASL mechanism (schema)" "must be one of the following" \
  --set kafka.sasl.mechanism=GSSAPI

echo "check.sh: OK: $cases value sets linted and rendered, $docs_total documents, $validated_total validations (kubernetes-validate --strict, Kubernetes ${kube_versions[*]}), $crd_total prometheus-operator documents checked for presence, $refused bad value sets refused"
