"""The README's run command, as a user runs it: `pulse demo` end to end on real services."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.helpers import run_pulse
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration


def test_demo_prints_every_customer_read_back_from_redis(isolated: Isolated) -> None:
    # The demo's customer ids are fixed; give it a Redis database of its own.
    redis_url = isolated.settings.redis_url  # the session's test database, empty now
    env = {**os.environ, **isolated.env, "PULSE_REDIS_URL": redis_url}
    cmd = ("demo", "--customers", "8", "--events", "120")
    first = run_pulse(env, *cmd, timeout=400)
    assert "8/8 customers in Redis equal the batch computation" in first.stdout
    rows = [line for line in first.stdout.splitlines() if re.match(r"^demo7-8x120-c\d{4}\s+\d+\s+\d+\.\d\d", line)]
    assert len(rows) == 8

    # Seeded event ids: a second run is recognised as redelivery and changes nothing.
    second = run_pulse(env, *cmd, timeout=400)
    # customer, orders, monetary and events; tags may have moved on with time in between
    rows_again = [line.split()[:4] for line in second.stdout.splitlines()
                  if re.match(r"^demo7-8x120-c\d{4}\s+\d+\s+\d+\.\d\d", line)]
    assert rows_again == [line.split()[:4] for line in rows]

    # The lookup the demo suggests shows the same values.
    customer, orders, monetary = rows[0].split()[:3]
    shown = run_pulse(env, "profile", customer, "--json", timeout=60)
    row = json.loads(shown.stdout)
    assert (row["customer_id"], row["orders"], row["monetary"]) == (customer, orders, monetary)
    missing = run_pulse(env, "profile", "nobody-here", timeout=60, check=False)
    assert missing.returncode != 0 and "no profile for customer 'nobody-here'" in missing.stderr
