"""Operating commands: local services, the worker, the demo, the benchmark, resync."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stream.cli.base import Progress, echo_err, load_or_exit, main, not_caught_up
from stream.infra.process import InfraError

if TYPE_CHECKING:
    from stream.settings import Settings


@main.command(help="Start a local Kafka (KRaft) and Redis unless the configured ones answer.")
@click.option("--secure", is_flag=True, help="Kafka with a SASL_SSL (SCRAM-SHA-512) listener and Redis with TLS and a "
                                             "password, from a generated CA; prints where their client settings are.")
def up(secure: bool) -> None:
    from stream.infra import services

    settings = load_or_exit()
    try:
        if secure:
            env_file = services.up_secure(settings, say=click.echo)
            click.echo(f"secured Kafka and Redis are up; their client settings (with the passwords) are in {env_file}:"
                       f"\n  set -a; . {env_file}; set +a")
            return
        rows = services.up(settings, say=click.echo)
    except InfraError as exc:
        raise click.ClickException(str(exc)) from None
    for row in rows:
        click.echo(row.line())


@main.command(help="Show each service, its address, and whether pulse started it.")
@click.option("--secure", is_flag=True, help="Those `pulse up --secure` started (load their settings first: "
                                           "set -a; . .pulse/secure/pulse.env).")
def status(secure: bool) -> None:
    from stream.infra import services

    settings = load_or_exit()
    rows = services.status(settings, secure=secure)
    for row in rows:
        click.echo(row.line())
    if not all(r.running for r in rows):
        if secure and any(r.owner.startswith("pulse") and not r.running for r in rows):
            click.echo(f"(started but not answering with these settings: load {services.secure_home(settings)}"
                       "/pulse.env first)", err=True)
        sys.exit(1)


@main.command(help="Stop the services `pulse up` started (by recorded pid; never external ones).")
@click.option("--secure", is_flag=True, help="Stop those `pulse up --secure` started.")
def down(secure: bool) -> None:
    from stream.infra import services

    for name, outcome in services.down(load_or_exit(), secure=secure).items():
        click.echo(f"{name:<6} {outcome}")


@main.command(help="Run a stream-processing worker (Faust) in the foreground.")
def worker() -> None:
    load_or_exit()  # fail fast with a clear message
    os.execvp(sys.executable, [sys.executable, "-m", "agents"])


@main.command(help="Run the whole pipeline locally on a generated year of customers, show what it made of "
                    "them once scores settled, and leave the lookup API and dashboard running.")
@click.option("--customers", default=250, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--days", default=365, show_default=True, type=click.IntRange(30, 3650), help="Event time covered.")
@click.option("--seed", default=7, show_default=True, help="Seed of the generated population.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for the worker.")
@click.option("--keep-worker/--stop-worker", default=False, help="Leave the worker running.")
@click.option("--serve-port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the lookup API and dashboard left running.")
@click.option("--no-serve", is_flag=True, help="Do not start the lookup API.")
def demo(customers: int, days: int, seed: int, timeout: float, keep_worker: bool, serve_port: int,
         no_serve: bool) -> None:
    from stream.cli.demo import run_demo

    try:
        ok = run_demo(load_or_exit(), customers=customers, days=days, seed=seed, timeout=timeout,
                      keep_worker=keep_worker, serve_port=None if no_serve else serve_port, say=click.echo)
    except InfraError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(0 if ok else 1)


@main.command(help="Measure the pipeline on the configured Kafka and Redis: raw consume rate, events/s, "
                    "event->Redis latency at half load, RSS (own topics, group and Redis db; removed after).")
@click.option("--events", default=50_000, show_default=True, type=click.IntRange(100, 10_000_000))
@click.option("--customers", default=5_000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16))
@click.option("--redis-db", default=13, show_default=True, type=click.IntRange(0, 15),
              help="An empty Redis database to write to (emptied afterwards).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JSON to this file.")
@click.option("--lookups", is_flag=True,
              help="Measure the lookup API and the direct client instead (--customers profiles; no Kafka).")
@click.option("--rate", default=500.0, show_default=True, type=click.FloatRange(1, 100_000),
              help="--lookups: requests per second offered.")
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(1, 3600),
              help="--lookups: how long each kind of request is offered.")
@click.option("--api-workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="--lookups: pulse serve processes.")
@click.option("--batch-rate", default=50.0, show_default=True, type=click.FloatRange(1, 100_000),
              help="--lookups: 100-id batch requests per second offered.")
@click.option("--soak", "soak_seconds", default=0.0, show_default=True, type=click.FloatRange(0, 86_400),
              help="Then offer steady load for this many seconds (the run's customers, events stamped now) "
                   "and report the worker's RSS every 30 s: flat, or growing with the events?")
@click.option("--soak-rate", type=click.FloatRange(1, 100_000),
              help="--soak: events per second offered [default: half the measured pipeline rate].")
@click.option("--logs", "logs_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the workers' logs in this directory (the stacks of any event-loop stalls are there).")
def bench(events: int, customers: int, workers: int, redis_db: int, json_file: Path | None, lookups: bool,
          rate: float, seconds: float, api_workers: int, batch_rate: float, soak_seconds: float,
          soak_rate: float | None, logs_dir: Path | None) -> None:
    from stream.cli.bench import Bench, BenchError

    settings = load_or_exit(kafka=True, redis=True)
    if lookups:
        from stream.cli.lookup_bench import run_lookup_bench

        try:
            found = run_lookup_bench(settings.redis_url.rsplit("/", 1)[0] + f"/{redis_db}", customers, rate, seconds,
                                     api_workers, batch_rate, say=click.echo)
        except BenchError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo("\n".join(found.lines()))
        if json_file is not None:
            json_file.write_text(json.dumps(found.to_json(), indent=2) + "\n")
        return
    if customers > events:
        raise click.BadParameter(f"{customers} customers need at least as many events", param_hint="--customers")
    run = Bench(settings, redis_db, say=click.echo)
    try:
        run.check_redis_db_empty()  # before anything is created: a busy database is never emptied
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        result = run.run(events, customers, workers, soak_seconds, soak_rate)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if logs_dir is not None:
            kept = run.keep_logs(logs_dir)
            click.echo(f"worker logs kept: {', '.join(map(str, kept)) or 'none written'}")
        run.clean_up()
    click.echo("\n".join(result.lines()))
    if json_file is not None:
        json_file.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        click.echo(f"results written to {json_file}")


@main.command(help="Rebuild Redis from the workers' tables (after Redis lost data).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return when the workers have re-published everything.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds --wait waits at most.")
def resync(wait: bool, timeout: float) -> None:
    import asyncio

    from stream.core.sweep import RESYNC_KEY
    from stream.io.produce import request_resync

    settings = load_or_exit(kafka=True)
    count = asyncio.run(request_resync(settings.kafka, settings.topic("customer-events"), RESYNC_KEY))
    click.echo(f"asked the workers of {settings.app_id} to re-publish the profiles of {count} partitions")
    if wait:
        _wait_for_control_records(settings, timeout, "resync")
        click.echo("resynced: Redis holds every profile in the tables")


def _wait_for_control_records(settings: Settings, timeout: float, label: str) -> None:
    """Wait until the workers have processed everything on ``customer-events`` (their control topic)."""
    import asyncio

    from stream.io.replay import wait_until_processed
    from stream.topology import processing_groups

    groups = processing_groups(settings, inputs=("customer-events",))
    progress = Progress(echo_err, label)
    behind = asyncio.run(wait_until_processed(settings.kafka, groups, timeout, progress=progress.lag))
    if behind:
        raise not_caught_up(behind, timeout)


@main.command(help="Undo an identity link: move an anonymous id's (device's, cookie's) activity back out of the "
                   "customer it was merged into; its later events stay its own until it is identified again.")
@click.argument("anonymous_id")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return when the workers have applied it (the customer's profile is rewritten).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds --wait waits at most.")
def unlink(anonymous_id: str, wait: bool, timeout: float) -> None:
    import asyncio
    from datetime import UTC, datetime

    from stream.core.identity import UNLINK_KEY, is_placeholder, unlink_request
    from stream.io.produce import send_control

    if is_placeholder(anonymous_id):
        raise click.UsageError(f"ANONYMOUS_ID: {anonymous_id!r} is a placeholder; placeholder ids are never linked")
    settings = load_or_exit(kafka=True)
    stored = settings.stored_id(anonymous_id.strip())
    partition = asyncio.run(send_control(settings.kafka, settings.topic("customer-events"), UNLINK_KEY, stored,
                                         unlink_request(stored, datetime.now(UTC))))
    echo_err(f"unlink of {anonymous_id!r} requested on {settings.topic('customer-events')}[{partition}]")
    if wait:
        _wait_for_control_records(settings, timeout, "unlink")
        click.echo(f"unlinked {anonymous_id!r}: its activity is out of the customer's profile "
                   "(the identity counters say whether it was linked: pulse status)")
