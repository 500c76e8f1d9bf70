"""The ``pulse`` command group and what its commands share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import click

from stream.settings import Settings, SettingsError, load_settings


def load_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def produce_events(settings: Settings, events: Iterator[dict[str, Any]], total: int) -> int:
    """Produce events (keyed by customer) to the events topic with a progress bar."""
    import asyncio

    from stream.io.produce import produce

    with click.progressbar(length=total, label="producing", show_pos=True) as bar:
        done = 0

        def advance(sent: int) -> None:
            nonlocal done
            bar.update(sent - done)
            done = sent

        records = ((str(e.get("customer_id", "")).encode(), json.dumps(e).encode()) for e in events)
        return asyncio.run(produce(settings.kafka_bootstrap, settings.topic("events"), records, progress=advance))


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
