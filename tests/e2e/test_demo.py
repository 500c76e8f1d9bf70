"""The README's run command, as a user runs it: `pulse demo` end to end on real services."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration


def test_demo_prints_every_customer_read_back_from_redis(isolated: Isolated) -> None:
    # The demo's customer ids are fixed; give it a Redis database of its own.
    redis_url = isolated.settings.redis_url  # the session's test database, empty now
    env = {**os.environ, **isolated.env, "PULSE_REDIS_URL": redis_url}
    cmd = [sys.executable, "-m", "stream.cli", "demo", "--customers", "8", "--events", "120"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "8/8 customers in Redis equal the batch computation" in first.stdout
    rows = [line for line in first.stdout.splitlines() if re.match(r"^demo7-8x120-c\d{4}\s+\d+\s+\d+\.\d\d", line)]
    assert len(rows) == 8

    # Seeded event ids: a second run is recognised as redelivery and changes nothing.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr
    # customer, orders, monetary and events; tags may have moved on with time in between
    rows_again = [line.split()[:4] for line in second.stdout.splitlines()
                  if re.match(r"^demo7-8x120-c\d{4}\s+\d+\s+\d+\.\d\d", line)]
    assert rows_again == [line.split()[:4] for line in rows]

    # The lookup the demo suggests shows the same values.
    customer, orders, monetary = rows[0].split()[:3]
    shown = subprocess.run([sys.executable, "-m", "stream.cli", "profile", customer, "--json"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert (row["customer_id"], row["orders"], row["monetary"]) == (customer, orders, monetary)
    missing = subprocess.run([sys.executable, "-m", "stream.cli", "profile", "nobody-here"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no profile for customer 'nobody-here'" in missing.stderr
