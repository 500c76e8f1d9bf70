#!/usr/bin/env bash
# The whole test suite: unit, doctests, and integration tests against a real Kafka broker
# and a real Redis server (started here if the configured ones do not answer, then stopped).
# `scripts/test.sh --fast`: lint, types, unit and property tests and doctests only (no
# services, under a minute). Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=()
if [ "${1:-}" = "--fast" ]; then
  shift
  fast=(-m "not integration")
fi
scripts/bootstrap.sh
.venv/bin/ruff check schemas stream agents tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "${fast[@]}" "$@"
