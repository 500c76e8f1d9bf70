"""Service tracking by pid + start time: `pulse down` must never stop a process it did not start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stream.infra.process import ServiceRecord, is_alive, load_record, save_record, spawn, stop


def test_spawned_process_is_ours_until_stopped(tmp_path: Path) -> None:
    record = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                   data_dir=tmp_path, address="-", log_file=tmp_path / "s.log")
    assert is_alive(record)
    assert load_record(tmp_path, "sleeper") == record
    assert stop(tmp_path, "sleeper", timeout=10).startswith("stopped")
    assert not is_alive(record)
    assert load_record(tmp_path, "sleeper") is None


def test_a_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # A record naming this pid but another start time: the process is not ours.
        fake = ServiceRecord(name="kafka", pid=other.pid, cmdline=["java"], address="-",
                             log_file="-", started_at=0.0, proc_start_ticks=1)
        save_record(tmp_path, fake)
        assert not is_alive(fake)
        assert stop(tmp_path, "kafka") == "already stopped"
        assert other.poll() is None, "stop() must not signal a process it did not start"
    finally:
        other.kill()
        other.wait()


def test_stop_without_a_record_says_so(tmp_path: Path) -> None:
    assert stop(tmp_path, "redis") == "not started by pulse"
