"""The dashboard of `pulse serve`, in a real headless browser (Debian's chromium, installed by
scripts/install-chromium.sh when missing), against a running pipeline: after its scripts ran,
every panel holds data; a screenshot is kept in test-artifacts/dashboard.png."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stream.infra.worker import WorkerProcess, worker_env
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "dashboard-token-0123456789"


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    done = subprocess.run([str(ROOT / "scripts" / "install-chromium.sh")], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"chromium could not be installed:\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1]


def _browse(chromium: str, url: str, *args: str) -> str:
    done = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--window-size=1400,2200", "--virtual-time-budget=20000", *args, url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _attribute(dom: str, element_id: str, name: str) -> int:
    match = re.search(rf'id="{element_id}"[^>]*data-{name}="(\d+)"', dom) or re.search(
        rf'data-{name}="(\d+)"[^>]*id="{element_id}"', dom)
    return int(match.group(1)) if match else -1


def test_the_dashboard_renders_every_panel_with_data(isolated: Isolated, chromium: str) -> None:
    env = {**os.environ, **isolated.env, "PULSE_API_TOKENS": TOKEN}
    events = isolated.data_dir / "events.jsonl"
    isolated.data_dir.mkdir(parents=True, exist_ok=True)
    run_pulse(env, "generate", "--customers", "120", "--days", "365", "--seed", "5", "--prefix", f"d{isolated.tag}",
              "--out", str(events), "--truth", str(isolated.data_dir / "truth.jsonl"), timeout=120)
    bad = isolated.data_dir / "bad.jsonl"
    bad.write_text('{"type": "purchase", "customer_id": "x"}\n')  # a dead letter to show
    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w.log", isolated.settings.web_port).start()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        run_pulse(env, "replay", str(events), "--wait", "--timeout", "600")
        run_pulse(env, "replay", str(bad), "--wait", "--timeout", "120")
        base = f"http://127.0.0.1:{port}"

        def pipeline_seen() -> bool:
            try:
                data = httpx.get(f"{base}/v1/dashboard", headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            samples = data["pipeline"]["samples"]
            # predicted values come with the purchase model, which a worker fits every
            # PULSE_PURCHASE_FIT_SECONDS (30 s): the replay can be over sooner
            return (len(samples) >= 2 and bool(data["pipeline"]["dead_letters"]) and bool(data["alerts"])
                    and data["value"]["predicted"] > 0)

        wait_for(pipeline_seen, 90, "pulse serve following Kafka and Redis, and a purchase model")

        dom = _browse(chromium, f"{base}/#token={TOKEN}", "--dump-dom")
        assert 'data-ready="true"' in dom, dom[:2000]
        assert _attribute(dom, "segments", "points") > 0
        assert _attribute(dom, "throughput", "points") > 0
        assert _attribute(dom, "deadletters", "points") >= 1
        assert _attribute(dom, "risk", "points") > 0
        assert _attribute(dom, "value", "points") > 0
        assert _attribute(dom, "migration", "rows") > 0
        assert _attribute(dom, "alerts", "items") > 0
        assert "churn probability of" in dom and "customers in segments" in dom
        predicted = re.search(r"predicted spend within the horizon of (\d+) of (\d+) customers", dom)
        assert predicted and 0 < int(predicted.group(1)) <= int(predicted.group(2)), dom[:2000]

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        _browse(chromium, f"{base}/#token={TOKEN}", f"--screenshot={shot}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        without = _browse(chromium, f"{base}/", "--dump-dom")  # no token: the form, no data
        assert 'data-ready="true"' not in without and "a token is needed" in without
    finally:
        server.terminate()
        server.wait(timeout=10)
        worker.stop()
