"""Data-subject requests: ``pulse access`` (``stream/io/access.py``)."""

from __future__ import annotations

import json

import click

from stream.cli.base import echo_err, load_or_exit, main


@main.command(help="Export everything held about one customer (a data-subject access request) as JSON.")
@click.argument("customer_id")
@click.option("--out", "out", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="Where to write the JSON document ('-': stdout).")
def access(customer_id: str, out: str) -> None:
    import asyncio

    from stream.io.access import subject_access

    settings = load_or_exit(kafka=True, redis=True)
    document = asyncio.run(subject_access(settings, customer_id))
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if out == "-":
        click.echo(text, nl=False)
    else:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
        held = [name for name in ("state", "profile", "tag_changes", "alerts", "churn_labels") if document[name]]
        echo_err(f"wrote {out}: {', '.join(held) or 'nothing held'} for customer {customer_id!r}")


@main.command(help="Erase one customer (a data-subject erasure request) from the tables, their changelogs and "
                   "Redis, suppress their later events, and print the receipt.")
@click.argument("customer_id")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the receipt (the worker owning the customer must be running).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds --wait waits at most.")
def forget(customer_id: str, wait: bool, timeout: float) -> None:
    import asyncio
    import time

    import redis

    from stream.core.erasure import ErasureRequestError
    from stream.io.produce import submit_erasure
    from stream.sinks.erasure import receipt_key

    settings = load_or_exit(kafka=True, redis=True)
    try:
        request = asyncio.run(submit_erasure(settings, customer_id))
    except ErasureRequestError as exc:
        raise click.UsageError(str(exc)) from None
    echo_err(f"erasure {request.request_id} requested on {settings.topic('customer-events')}")
    if not wait:
        click.echo(json.dumps({"request_id": request.request_id, "receipt_key": receipt_key(request.request_id)}))
        return
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    started = time.monotonic()
    shown = started
    try:
        while (found := client.get(receipt_key(request.request_id))) is None:
            now = time.monotonic()
            if now - started > timeout:
                raise click.ClickException(
                    f"no receipt for erasure {request.request_id} after {timeout:.0f}s: is a worker of "
                    f"{settings.app_id} running? The request stays queued and is applied when one runs; "
                    f"its receipt will be at {receipt_key(request.request_id)} in Redis")
            if now - shown >= 5:
                echo_err(f"  waiting for the receipt ({now - started:.0f} s)")
                shown = now
            time.sleep(0.25)
    finally:
        client.close()
    click.echo(json.dumps(json.loads(str(found)), indent=2))
