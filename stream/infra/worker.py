"""Starting and stopping a worker process (``python -m agents``) for the demo and tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stream.infra.process import InfraError, tail


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_file: Path, web_port: int) -> None:
        self.env = env
        self.log_file = log_file
        self.web_port = web_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> WorkerProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "agents"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise InfraError(
                    f"the worker exited with {self.proc.returncode}; log:\n{tail(self.log_file)}")
            if self.get("/health/") is not None:
                return self
            time.sleep(0.5)
        raise InfraError(
            f"the worker's web view did not answer within {timeout:.0f}s; log:\n{tail(self.log_file)}")

    def get(self, path: str) -> Any:
        try:
            token = self.env.get("PULSE_API_TOKENS", "").split(",")[0]
            request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}",
                                             headers={"Authorization": f"Bearer {token}"} if token else {})
            with urllib.request.urlopen(request, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        except (OSError, ValueError):
            return None

    def dump_tasks(self, wait: float = 2.0) -> str:
        """Ask the worker to log what each of its asyncio tasks awaits (SIGUSR1, see
        agents/diagnostics.py) and return that part of its log."""
        if self.proc is None or self.proc.poll() is not None:
            return f"(worker not running; log:\n{tail(self.log_file)})"
        before = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(wait)
        with open(self.log_file, "rb") as log:
            log.seek(before)
            return log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def worker_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides or {})
    return env
