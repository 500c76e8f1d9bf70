"""Data commands: replay, generate, export, churn-report, uplift-report, profile."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from stream.cli.base import Progress, echo_err, load_or_exit, main, not_caught_up, produce_events


@main.command(help="Produce the events of a file to the events topic, keeping their event time.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "cdnow"]), default="jsonl",
              show_default=True, help="jsonl/csv: one event per line or row; cdnow: the CDNOW master log.")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only events on or before this date (UTC, inclusive).")
@click.option("--speed", type=float, default=None,
              help="Replay at this multiple of real time (default: as fast as possible).")
@click.option("--wait/--no-wait", default=False,
              help="Return only when the worker has processed everything and flushed Redis.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds --wait waits at most.")
def replay(path: Path, fmt: str, until: datetime | None, speed: float | None, wait: bool,
           timeout: float) -> None:
    import asyncio

    from stream.io.replay import ReplayError, paced, read_events, select, wait_until_processed
    from stream.topology import processing_groups

    settings = load_or_exit(kafka=True)
    if speed is not None and speed <= 0:
        raise click.BadParameter("must be a positive number, e.g. 60 for one hour per minute",
                                 param_hint="--speed")
    limit = until.replace(hour=23, minute=59, second=59, tzinfo=UTC) if until else None
    try:
        events = select(read_events(path, fmt), limit)
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    topic = settings.topic("events")
    click.echo(f"replaying {len(events)} events from {path} to {topic}"
               + (f" (until {limit.date()})" if limit else ""))
    sent = produce_events(settings, paced(events, speed), len(events))
    customers = len({str(e["customer_id"]) for e in events if e.get("customer_id")})
    visitors = len({str(e["anonymous_id"]) for e in events if e.get("anonymous_id") and not e.get("customer_id")})
    click.echo(f"produced {sent} events for {customers} customers"
               + (f" and {visitors} anonymous ids" if visitors else ""))
    if wait:
        click.echo(f"waiting for worker group {settings.app_id} to catch up ...")
        progress = Progress(echo_err, "processing")
        behind = asyncio.run(wait_until_processed(settings.kafka, processing_groups(settings), timeout,
                                                  progress=progress.lag, settle=settings.sweep_seconds + 2.0))
        if behind:
            raise not_caught_up(behind, timeout)
        click.echo("processed: the worker has consumed every record and flushed Redis")


@main.command(help="Generate a realistic synthetic population (seeded) with a hidden churn process.")
@click.option("--customers", default=1000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default="2024-01-01",
              show_default=True, help="First day (UTC).")
@click.option("--seed", default=42, show_default=True)
@click.option("--churn-share", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="Share of customers whose activity decays and stops.")
@click.option("--prefix", default="gen", show_default=True, help="Customer ids are PREFIX-000001, ...")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write events as JSONL here.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the hidden ground truth (one JSON line per customer) here.")
@click.option("--seasonal-share", default=0.15, show_default=True, type=click.FloatRange(0, 1),
              help="Share of customers who shop mostly before year end (0: a stationary population).")
@click.option("--incident", default=None, metavar="SIGNAL:FACTOR:YYYY-MM-DD:DAYS",
              help="Inject an incident, e.g. conversion:0.5:2024-06-01:14 halves the chance that a session "
                   "buys for 14 days (signals: conversion, checkout, basket_value, refund_rate; "
                   "invalid:0.05:... writes 5% of the events with an unreadable event_time).")
@click.option("--anomalies", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Plant an abnormal purchase (--anomaly-factor x the median basket, 03:00-04:59, another "
                   "channel) for this share of the customers with four or more purchases.")
@click.option("--anomaly-factor", default=20.0, show_default=True, type=click.FloatRange(1.5, 1000),
              help="The planted abnormal purchases' multiple of the customer's median basket.")
@click.option("--diurnal", is_flag=True,
              help="Sessions around each customer's own hour of the day (between 08 and 22 UTC, spread 2 h) "
                   "instead of evenly over the day.")
@click.option("--anomalies-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the planted abnormal purchases here (JSON lines), to score suspicious_transaction alerts.")
@click.option("--cross-sell", default=None, metavar="A:B:SHARE",
              help="Plant a cross-sell rule, e.g. books:music:0.5: after a purchase of books, half the time a "
                   "purchase of music 1-30 days later (music is then bought only that way).")
@click.option("--behaviour-groups", is_flag=True,
              help="Plant four behaviour groups (frequent_small, rare_large, browser, regular: purchase rate, "
                   "basket, conversion and channel), named in the truth's group field, to score the clusters.")
@click.option("--anonymous-share", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of customers whose first session is browsed on a device before they log in: its clicks "
                   "carry anonymous_id and no customer_id, and an identify event links them at the login.")
@click.option("--steady", is_flag=True,
              help="Customers arrive at a constant rate over the period and leave with a constant hazard "
                   "(--churn-share of them within a year of signing up): with --seasonal-share 0, a population "
                   "whose rates do not change, to check that drift monitors stay quiet.")
@click.option("--produce", "to_kafka", is_flag=True, help="Produce the events to the events topic.")
def generate(customers: int, days: int, start: datetime, seed: int, churn_share: float, seasonal_share: float,
             incident: str | None, prefix: str, out: Path | None, truth: Path | None, anomalies: float,
             anomaly_factor: float, diurnal: bool, anomalies_out: Path | None, cross_sell: str | None,
             behaviour_groups: bool, anonymous_share: float, steady: bool, to_kafka: bool) -> None:

    from stream.io.generate import (
        CrossSell,
        Incident,
        PopulationSpec,
        corrupt,
        inject_anomalies,
        plant_cross_sell,
        truth_rows,
    )
    from stream.io.generate import generate as make_population

    if out is None and not to_kafka:
        raise click.UsageError("say where the events go: --out FILE and/or --produce")
    try:
        injected = Incident.parse(incident) if incident else None
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--incident: "), param_hint="--incident") from None
    try:
        rule = CrossSell.parse(cross_sell) if cross_sell else None
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--cross-sell: "), param_hint="--cross-sell") from None
    spec = PopulationSpec(customers=customers, days=days, start=start.replace(tzinfo=UTC), seed=seed,
                          churn_share=churn_share, seasonal_share=seasonal_share, prefix=prefix, incident=injected,
                          behaviour_groups=behaviour_groups, diurnal=diurnal, steady=steady)
    if anomalies_out is not None and not anomalies:
        raise click.UsageError("--anomalies-out needs --anomalies SHARE (e.g. 0.1)")
    events, hidden = make_population(spec)
    planted: list[dict[str, Any]] = []
    if anomalies:
        events, planted = inject_anomalies(events, anomalies, seed, anomaly_factor)
    cross_sold: list[dict[str, Any]] = []
    if rule is not None:
        events, cross_sold = plant_cross_sell(events, rule, seed)
    browsed = 0
    if anonymous_share:
        from stream.io.anonymize import browse_before_login

        events, browsed = browse_before_login(events, anonymous_share, seed)
    corrupted = corrupt(events, injected, seed) if injected is not None and injected.signal == "invalid" else 0
    churners = sum(t.churns for t in hidden)
    notes = [f"{churners} churn"]
    if corrupted:
        notes.append(f"{corrupted} events written invalid")
    if anonymous_share:
        notes.append(f"{browsed} first sessions browsed before login")
    if anomalies:
        notes.append(f"{len(planted)} abnormal purchases planted")
    if rule is not None:
        notes.append(f"{len(cross_sold)} {rule.consequent} purchases planted after {rule.antecedent}")
    click.echo(f"generated {len(events)} events for {customers} customers over {days} days ({', '.join(notes)})")
    if anomalies_out is not None:
        anomalies_out.parent.mkdir(parents=True, exist_ok=True)
        anomalies_out.write_text("".join(json.dumps(event) + "\n" for event in planted), encoding="utf-8")
        click.echo(f"planted abnormal purchases -> {anomalies_out}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as handle:
            for event in events:
                handle.write(json.dumps(event) + "\n")
        click.echo(f"events -> {out}")
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        with truth.open("w", encoding="utf-8") as handle:
            for row in truth_rows(hidden):
                handle.write(json.dumps(row) + "\n")
        click.echo(f"ground truth -> {truth}")
    if to_kafka:
        settings = load_or_exit(kafka=True)
        produce_events(settings, iter(events), len(events))
        click.echo(f"produced {len(events)} events to {settings.topic('events')}")


@main.command(name="churn-report",
              help="Score the churn alerts in Redis against a generated population's ground truth.")
@click.option("--events", "events_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The events file `pulse generate --out` wrote (and `pulse replay` sent).")
@click.option("--truth", "truth_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The ground truth `pulse generate --truth` wrote.")
def churn_report(events_file: Path, truth_file: Path) -> None:
    import asyncio
    from datetime import timedelta

    import redis

    from stream.io.evaluate import churn_report as report
    from stream.sinks.redis import RedisSink

    settings = load_or_exit(redis=True)

    async def read_alerts() -> list[dict[str, str]]:
        sink = RedisSink.from_url(settings.redis_url)
        try:
            return await sink.alerts()
        finally:
            await sink.close()

    try:
        alerts = asyncio.run(read_alerts())
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read alerts from {settings.redis_display}: {exc}") from None

    def lines(path: Path) -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    result = report(lines(events_file), lines(truth_file), alerts, horizon_days=settings.churn_horizon_days,
                    lateness=timedelta(seconds=settings.allowed_lateness_seconds))
    click.echo(f"H = {settings.churn_horizon_days} days, threshold {settings.churn_threshold}, "
               f"{len(alerts)} alerts in Redis")
    for line in result.lines():
        click.echo(line)


@main.command(name="uplift-report",
              help="Compare purchases after alerts between treated and held-out customers (PULSE_HOLDOUT_SHARE), "
                   "per alert kind, with a confidence interval.")
@click.option("--kind", "kinds", multiple=True, help="Only this alert kind (repeatable); default: every kind.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only alerts raised on or after this date (UTC, event time).")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only alerts raised before this date (UTC, event time).")
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True,
              help="Confidence level of the interval.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON document.")
def uplift_report(kinds: tuple[str, ...], since: datetime | None, until: datetime | None, confidence: float,
                  as_json: bool) -> None:
    import asyncio

    from aiokafka.errors import KafkaError

    from schemas import AlertOutcome
    from stream.core.uplift import report_lines
    from stream.core.uplift import uplift_report as report
    from stream.io.access import read_keyed

    settings = load_or_exit(kafka=True)
    topic = settings.topic("alert-outcomes")
    try:
        values = asyncio.run(read_keyed(settings.kafka, topic, None))
    except KafkaError as exc:
        raise click.ClickException(f"cannot read {topic} from {settings.kafka_bootstrap}: {exc}") from None
    outcomes = [AlertOutcome.model_validate_json(value) for value in values if value]
    rows = report(outcomes, confidence, kinds, since.replace(tzinfo=UTC) if since else None,
                  until.replace(tzinfo=UTC) if until else None)
    if as_json:
        click.echo(json.dumps({"topic": topic, "outcomes_read": len(outcomes),
                               "holdout_share": settings.holdout_share,
                               "unit": "each customer's first resolved alert of the kind",
                               "kinds": [row.to_dict() for row in rows]}, indent=2))
        return
    click.echo(f"{len(outcomes)} alert outcomes in {topic}; held-out share now {settings.holdout_share:g}; "
               "one unit per customer and kind: their first resolved alert")
    for line in report_lines(rows):
        click.echo(line)


@main.command(help="Write every customer's profile from Redis as JSON lines (purchase-model scores as "
                    "of the model's now).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file ('-' for stdout).")
def export(out: Path) -> None:

    import redis

    from stream.api.lookup import read_models
    from stream.sinks.base import as_of_now, typed_fields
    from stream.sinks.redis import CHURN_MODEL_KEY, KEY_PREFIX, PURCHASE_MODEL_KEY

    settings = load_or_exit(redis=True)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    pattern = f"{KEY_PREFIX}cust:*"
    try:
        stored_models = client.mget(PURCHASE_MODEL_KEY, CHURN_MODEL_KEY)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read profiles from {settings.redis_display}: {exc}") from None
    models = read_models(*stored_models)  # type: ignore[misc]
    written = 0
    if str(out) != "-":
        out.parent.mkdir(parents=True, exist_ok=True)
    handle = sys.stdout if str(out) == "-" else out.open("w", encoding="utf-8")
    try:
        batch: list[str] = []

        def flush() -> None:
            nonlocal written
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.hgetall(key)
            for row in pipe.execute():
                if not row:
                    continue
                row = as_of_now(row, models)
                handle.write(json.dumps(typed_fields(row), sort_keys=True) + "\n")
                written += 1
            batch.clear()

        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(str(key))
            if len(batch) >= 1000:
                flush()
        flush()
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read profiles from {settings.redis_display}: {exc}") from None
    finally:
        if handle is not sys.stdout:
            handle.close()
    click.echo(f"exported {written} customers to {out}", err=True)


@main.command(help="Show one customer's profile as stored in Redis.")
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Print the hash as JSON.")
def profile(customer_id: str, as_json: bool) -> None:

    import redis

    from stream.sinks.redis import customer_key

    settings = load_or_exit(redis=True)
    key = customer_key(settings.stored_id(customer_id.strip()))
    try:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        row: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read {key} from {settings.redis_display}: {exc}") from None
    if not row:
        raise click.ClickException(f"no profile for customer {customer_id!r} ({key} is absent)")
    if as_json:
        click.echo(json.dumps(row, indent=2, sort_keys=True))
        return
    click.echo(key)
    for field in sorted(row):
        click.echo(f"  {field:<20} {row[field]}")
