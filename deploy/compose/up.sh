#!/usr/bin/env bash
# Starts the compose deployment (make compose-up): generates the secrets
# once (secrets.sh), then builds the cdr-pipeline image and starts the
# stack in the background under the project name cdr. Extra arguments go to
# `up` (e.g. `deploy/compose/up.sh --wait`).
#
# Afterwards, for other compose commands:
#   export COMPOSE_PROJECT_NAME=cdr
#   docker compose -f deploy/compose/docker-compose.yml ps | logs -f | down
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
compose_file=$here/docker-compose.yml
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-cdr}

die() { echo "up.sh: $*" >&2; exit 1; }

"$here/secrets.sh"

if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
  # The Dockerfile needs BuildKit (`# syntax=` line); docker-compose 1.x
  # uses it only when asked.
  export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1
else
  die "neither \`docker compose\` (the Compose plugin) nor \`docker-compose\` is installed"
fi

if ! command -v docker >/dev/null 2>&1; then
  die "the docker CLI is not installed; the stack needs a Docker engine"
fi
if ! docker info >/dev/null 2>&1; then
  die "no Docker engine answers (\`docker info\` failed): start the Docker daemon, or point DOCKER_HOST at one; nothing was started"
fi

exec "${compose[@]}" -f "$compose_file" up -d --build "$@"
