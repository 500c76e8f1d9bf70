"""The ``pulse`` command group and what its commands share."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from stream.io.connect import ConnectionSetupError, check_kafka, check_redis
from stream.settings import Settings, SettingsError, load_settings


def load_or_exit(*, kafka: bool = False, redis: bool = False) -> Settings:
    """The settings, and with ``kafka``/``redis`` a first connection to each with them: bad
    credentials or an untrusted certificate stop the command at once, naming the setting."""
    try:
        settings = load_settings()
        if kafka:
            asyncio.run(check_kafka(settings.kafka))
        if redis:
            check_redis(settings.redis_url)
        return settings
    except (SettingsError, ConnectionSetupError) as exc:
        raise click.ClickException(str(exc)) from None


def produce_events(settings: Settings, events: Iterator[dict[str, Any]], total: int) -> int:
    """Produce events (keyed by their owner: ``stream.io.produce.event_key``) to the events topic with a
    progress bar."""
    import asyncio

    from stream.io.produce import event_key, produce

    with click.progressbar(length=total, label="producing", show_pos=True) as bar:
        done = 0

        def advance(sent: int) -> None:
            nonlocal done
            bar.update(sent - done)
            done = sent

        records = ((event_key(e), json.dumps(e).encode()) for e in events)
        return asyncio.run(produce(settings.kafka, settings.topic("events"), records, progress=advance))


@click.group(help="Customer Pulse: real-time customer analytics on Kafka and Redis.")
def main() -> None:
    pass


def not_caught_up(behind: dict[str, int], timeout: float) -> click.ClickException:
    """The error of a --wait that gave up, naming the partitions furthest behind."""
    worst = sorted(behind.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{name}: {lag}" for name, lag in worst[:8])
    shown += f", and {len(worst) - 8} more partitions" if len(worst) > 8 else ""
    return click.ClickException(f"the workers still had {sum(behind.values())} records to process after "
                                f"{timeout:.0f}s ({shown}); is `pulse worker` running?")


def echo_err(line: str) -> None:
    """Progress and notes go to stderr, so stdout stays the command's result."""
    click.echo(line, err=True)


class Progress:
    """A progress line every two seconds from the consumer lag (records still to process, over
    every topic of the pipeline: the most seen so far stands for the whole)."""

    def __init__(self, say: Callable[[str], None], what: str) -> None:
        self.say, self.what, self.total = say, what, 0
        self.started = time.perf_counter()
        self.last_shown = 0.0
        self.best = 0.0  # the lag can grow while topics appear: the bar never goes back
        self.caught_up_at: float | None = None  # the first report of no lag since the last lag

    def lag(self, behind: int) -> None:
        now = time.perf_counter()
        if behind:
            self.caught_up_at = None
        elif self.caught_up_at is None:
            self.caught_up_at = now
        if now - self.last_shown < 2.0:
            return
        self.last_shown = now
        self.total = max(self.total, behind)
        share = max(0.0, min(1.0, 1 - behind / self.total)) if self.total else 0.0
        self.best = share = max(self.best, share)
        self.say(f"  {self.what} [{'#' * int(30 * share):<30}] {share:4.0%}, {behind:,} records to go "
                 f"({now - self.started:.0f} s)")

    def done(self, summary: str) -> None:
        self.say(f"  {self.what} done in {(self.caught_up_at or time.perf_counter()) - self.started:.1f} s: {summary}")


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_answers(server: subprocess.Popen[bytes], base: str, timeout: float = 30.0) -> str | None:
    """Wait until a ``pulse serve`` just started answers ``/v1/health``: None when it does,
    else why not (it exited, or it did not answer in time)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return f"pulse serve exited with {server.returncode}"
        try:
            if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return f"pulse serve did not answer at {base} within {timeout:.0f}s"
