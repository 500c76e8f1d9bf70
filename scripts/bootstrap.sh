#!/usr/bin/env bash
# Creates .venv and installs Customer Pulse with its dev extras. Safe to run again.
# Needs: Python 3.11+, and for the local Kafka a Java 17+ runtime and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY' || { echo "bootstrap: Python 3.11 or newer is required (set PYTHON=...)" >&2; exit 2; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
for tool in java mvn; do
  command -v "$tool" >/dev/null || echo "bootstrap: warning: '$tool' not found; 'pulse up' needs it for the local Kafka (apt-get install openjdk-17-jre-headless maven)" >&2
done

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "bootstrap: ready ($(.venv/bin/python --version), .venv/bin/pulse)"
