#!/usr/bin/env bash
# The main job on the embedded default: install, start Kafka + Redis, run a worker on a
# sample stream, and print what reached Redis. `.venv/bin/pulse down` stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/pulse demo "$@"
