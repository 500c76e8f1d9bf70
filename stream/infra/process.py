"""Background service processes we start, tracked by recorded pid and command line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path


class InfraError(RuntimeError):
    """A local service could not be found, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    pid: int
    cmdline: list[str]
    address: str
    log_file: str
    started_at: float
    proc_start_ticks: int | None = None


def run_dir(data_dir: Path) -> Path:
    return data_dir / "run"


def record_path(data_dir: Path, name: str) -> Path:
    return run_dir(data_dir) / f"{name}.json"


def load_record(data_dir: Path, name: str) -> ServiceRecord | None:
    path = record_path(data_dir, name)
    if not path.exists():
        return None
    try:
        return ServiceRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def save_record(data_dir: Path, record: ServiceRecord) -> None:
    path = record_path(data_dir, record.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(path)


def process_start_ticks(pid: int) -> int | None:
    """The kernel's start time of a process (Linux), which a reused pid does not share."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[19])


def is_alive(record: ServiceRecord) -> bool:
    """True when the recorded pid is still the process we started (guards against pid reuse).

    Servers rewrite their process title, so identity is the pid plus its start time.
    """
    if Path("/proc/self/stat").exists():
        ticks = process_start_ticks(record.pid)
        return ticks is not None and ticks == record.proc_start_ticks
    try:
        os.kill(record.pid, 0)
    except OSError:
        return False
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def spawn(name: str, cmdline: list[str], *, data_dir: Path, address: str, log_file: Path,
          cwd: Path | None = None) -> ServiceRecord:
    """Start a detached process (its own session, so Ctrl-C in the shell does not reach it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmdline, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, start_new_session=True,
        )
    record = ServiceRecord(name=name, pid=proc.pid, cmdline=cmdline, address=address,
                           log_file=str(log_file), started_at=time.time(),
                           proc_start_ticks=process_start_ticks(proc.pid))
    save_record(data_dir, record)
    return record


def stop(data_dir: Path, name: str, timeout: float = 30.0) -> str:
    """Stop the service `pulse up` started, by its recorded pid only. Returns what happened."""
    record = load_record(data_dir, name)
    if record is None:
        return "not started by pulse"
    if not is_alive(record):
        record_path(data_dir, name).unlink(missing_ok=True)
        return "already stopped"
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            break
        _reap(record.pid)
        time.sleep(0.2)
    else:
        os.kill(record.pid, signal.SIGKILL)
        time.sleep(0.5)
    _reap(record.pid)
    record_path(data_dir, name).unlink(missing_ok=True)
    return f"stopped (pid {record.pid})"


def _reap(pid: int) -> None:
    # When we are the parent (tests), collect the zombie so the pid really disappears.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_ready(record: ServiceRecord, ready: Callable[[], bool], *, what: str, answer: str,
               timeout: float, poll: float = 0.3) -> ServiceRecord:
    """Wait until ``ready()``; fail with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            raise InfraError(f"{what} exited during start-up; last log lines:\n{tail(record.log_file)}")
        if ready():
            return record
        time.sleep(poll)
    raise InfraError(f"{what} did not answer {answer} within {timeout:.0f}s; log:\n{tail(record.log_file)}")


def tail(path: Path | str, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
