#!/usr/bin/env bash
# C libraries the build links: OpenSSL for librdkafka's TLS and SASL
# (SCRAM) support. Installed from Debian's packages when missing; idempotent.
set -euo pipefail
if pkg-config --exists openssl 2>/dev/null; then
  exit 0
fi
echo "[build deps] installing libssl-dev pkg-config (librdkafka TLS/SASL)" >&2
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >/dev/null
pkg-config --exists openssl
