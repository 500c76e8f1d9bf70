"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import subprocess
import sys


def run_pulse(env: dict[str, str], *args: str, timeout: float = 900, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    """Run ``pulse ARGS`` as a user would (a new process with this environment); with ``check``,
    fail the test with its output unless it exits 0."""
    done = subprocess.run([sys.executable, "-m", "stream.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, f"pulse {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done
