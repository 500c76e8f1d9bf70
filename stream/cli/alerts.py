"""``pulse alerts follow`` and ``pulse alerts relay``: churn-warning alerts out of Redis
(``stream/api/relay.py``)."""

from __future__ import annotations

import json
import signal
from typing import Any

import click

from stream.cli.base import echo_err, load_or_exit, main


@main.group(help="Churn-warning alerts: follow the stream, or relay it to a webhook.")
def alerts() -> None:
    pass


@alerts.command(help="Print alerts as they are raised (Ctrl-C to stop).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of text.")
@click.option("--from-beginning", is_flag=True, help="Start with the alerts Redis still holds.")
@click.option("--count", type=click.IntRange(1), help="Stop after this many alerts.")
def follow(as_json: bool, from_beginning: bool, count: int | None) -> None:
    import redis

    from stream.api.relay import alert_from_stream, describe
    from stream.sinks.redis import KEY_PREFIX

    settings = load_or_exit(redis=True)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    last, shown = ("0" if from_beginning else "$"), 0
    try:
        while count is None or shown < count:
            answer: Any = client.xread({f"{KEY_PREFIX}alerts": last}, count=100, block=1000)
            for _, entries in answer or []:
                for entry_id, fields in entries:
                    last = entry_id
                    alert = alert_from_stream(fields)
                    click.echo(json.dumps(alert) if as_json else describe(alert))
                    shown += 1
                    if count is not None and shown >= count:
                        return
    except KeyboardInterrupt:
        pass
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at {settings.redis_display}: {exc}") from None
    finally:
        client.close()


@alerts.command(help="Deliver every alert at least once to a webhook (HMAC-signed POSTs, retries, "
                     "dead letters); a restart resumes where it stopped. Needs PULSE_WEBHOOK_SECRET.")
@click.option("--webhook", required=True, help="The endpoint URL (http or https).")
@click.option("--group", default="pulse-relay", show_default=True,
              help="Redis consumer group: one per destination; relays of one group share the work.")
@click.option("--consumer", default="relay-1", show_default=True, help="This relay's name within the group.")
@click.option("--from-beginning", is_flag=True, help="A new group starts with the alerts Redis still holds.")
@click.option("--max-attempts", default=8, show_default=True, type=click.IntRange(1, 100),
              help="Attempts per alert before it goes to pulse:alerts:relay-dlq.")
def relay(webhook: str, group: str, consumer: str, from_beginning: bool, max_attempts: int) -> None:
    import redis

    from stream.api.relay import Relay

    settings = load_or_exit(redis=True)
    if not webhook.startswith(("http://", "https://")):
        raise click.BadParameter("expected an http:// or https:// URL", param_hint="--webhook")
    if not settings.webhook_secret:
        raise click.UsageError("set PULSE_WEBHOOK_SECRET (16-200 of letters, digits, '-', '_', '.', '~'): the "
                               "relay signs every POST with it")
    runner = Relay(redis.Redis.from_url(settings.redis_url, decode_responses=True), webhook, settings.webhook_secret,
                   group=group, consumer=consumer, max_attempts=max_attempts)

    def stop(*_: Any) -> None:
        runner.stopping = True  # the alert in flight is finished (or left unacknowledged) first

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    echo_err(f"relaying {settings.redis_display} alerts to {webhook} (group {group}, consumer {consumer})")
    try:
        stats = runner.run(from_start=from_beginning)
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at {settings.redis_display}: {exc}") from None
    echo_err(f"stopped: {stats.delivered} delivered, {stats.dead_lettered} dead-lettered, "
             f"{stats.held_out} held out (not sent), "
             f"{stats.attempts} attempts")

