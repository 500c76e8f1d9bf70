#!/usr/bin/env bash
# The whole test suite: unit, doctests, and integration tests against a real Kafka broker
# and a real Redis server (started here if the configured ones do not answer, then stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check schemas stream agents tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
