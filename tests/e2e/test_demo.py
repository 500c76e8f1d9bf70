"""`pulse demo` as a new user runs it: a generated population through the real pipeline, a
summary printed only once scores settled (exact against the batch computation), the lookup
API left running with a lookup that works, and a second run that changes nothing."""

from __future__ import annotations

import os
import re
import signal

import httpx
import pytest

from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, free_port

pytestmark = pytest.mark.integration


def _line(output: str, label: str) -> str:
    return next(line for line in output.splitlines() if line.strip().startswith(label))


def test_demo_summarises_a_settled_population_and_leaves_a_working_api(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env}
    env.pop("PULSE_API_TOKENS", None)
    port = free_port()
    cmd = ("demo", "--customers", "60", "--days", "240", "--seed", "3")
    first = run_pulse(env, *cmd, "--serve-port", str(port), timeout=600).stdout
    server_pid = int(re.search(r"stop: kill (\d+)", first).group(1))  # type: ignore[union-attr]
    try:
        assert "== 5/5 what Customer Pulse knows" in first
        exact = re.search(r"(\d+)/(\d+) customers' orders and monetary in Redis equal the batch computation", first)
        assert exact and exact.group(1) == exact.group(2) and int(exact.group(2)) >= 50, first
        segments = _line(first, "segments")
        assert len(re.findall(r"\d+", segments)) >= 3, segments  # the population spans several segments
        assert "high" in _line(first, "churn risk") and "churn_risk" in _line(first, "alerts")
        at_risk = first.split("most at risk:")[1].splitlines()[1:6]
        assert all(re.match(r"\s+demo3-60x240-\S+\s+[01]\.\d\d \w+", row) for row in at_risk), at_risk
        # the planted rule is the strongest
        assert re.match(r"\s+cross-sell\s+books -> music lift \d", _line(first, "cross-sell")), first
        assert re.match(r"\s+clusters\s+5 behaviour clusters: 0: \w", _line(first, "clusters ")), first

        token = re.search(r"#token=(\S+)", first).group(1)  # type: ignore[union-attr]
        lookup = re.search(r"curl -s -H 'Authorization: Bearer \S+' (\S+)", first).group(1)  # type: ignore[union-attr]
        answer = httpx.get(lookup, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "fresh" and answer.json()["profile"]["orders"] >= 0
        assert httpx.get(lookup, timeout=5).status_code == 401
    finally:
        os.kill(server_pid, signal.SIGTERM)

    # Seeded event ids: the same command again is recognised as redelivery and changes nothing.
    second = run_pulse(env, *cmd, "--no-serve", timeout=600).stdout
    for label in ("segments", "value tiers", "churn risk", "alerts"):
        assert _line(second, label) == _line(first, label)
    assert "kill" not in second
