"""The ``pulse`` command line: local infrastructure, the worker and the demo."""

from __future__ import annotations

import os
import sys

import click

from stream.infra.process import InfraError
from stream.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(help="Customer Pulse: real-time customer analytics on Kafka and Redis.")
def main() -> None:
    pass


@main.command(help="Start a local Kafka (KRaft) and Redis unless the configured ones answer.")
def up() -> None:
    from stream.infra import services

    settings = _settings()
    try:
        rows = services.up(settings, say=click.echo)
    except InfraError as exc:
        raise click.ClickException(str(exc)) from None
    for row in rows:
        click.echo(row.line())


@main.command(help="Show each service, its address, and whether pulse started it.")
def status() -> None:
    from stream.infra import services

    rows = services.status(_settings())
    for row in rows:
        click.echo(row.line())
    if not all(r.running for r in rows):
        sys.exit(1)


@main.command(help="Stop the services `pulse up` started (by recorded pid; never external ones).")
def down() -> None:
    from stream.infra import services

    for name, outcome in services.down(_settings()).items():
        click.echo(f"{name:<6} {outcome}")


@main.command(help="Run a stream-processing worker (Faust) in the foreground.")
def worker() -> None:
    _settings()  # fail fast with a clear message
    os.execvp(sys.executable, [sys.executable, "-m", "agents"])


@main.command(help="Run the whole pipeline locally on a sample stream and show what reached Redis.")
@click.option("--customers", default=20, show_default=True, help="Customers in the sample.")
@click.option("--events", default=600, show_default=True, help="Events in the sample.")
@click.option("--seed", default=7, show_default=True, help="Seed of the sample stream.")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for the worker.")
@click.option("--keep-worker/--stop-worker", default=False, help="Leave the worker running.")
def demo(customers: int, events: int, seed: int, timeout: float, keep_worker: bool) -> None:
    from stream.demo import run_demo

    try:
        ok = run_demo(_settings(), customers=customers, events=events, seed=seed,
                      timeout=timeout, keep_worker=keep_worker, say=click.echo)
    except InfraError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
