"""`pulse demo`: local services, a worker, a generated year of a customer base (new, loyal,
seasonal, declining and churning customers, refunds and complaints), and what Customer Pulse
made of it once every score has settled; then the lookup API and dashboard, left running."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis

from stream.cli.base import api_answers
from stream.core.batch import batch_raw_rfm
from stream.core.watermark import IDLE_SECONDS  # idle partitions then sweep to the newest event time
from stream.infra import services
from stream.infra.process import InfraError
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.generate import CrossSell, PopulationSpec, generate, plant_cross_sell
from stream.io.produce import event_records, produce
from stream.io.replay import wait_until_processed
from stream.settings import Settings
from stream.sinks.redis import AFFINITY_KEY, CLUSTERS_KEY, KEY_PREFIX, customer_key
from stream.topology import processing_groups

BAD_RECORDS = [b'{"type": "purchase", "event_id": ', b"\xff\xfe not utf-8",
               b'{"type": "teleport", "event_id": "x", "customer_id": "c"}']
START = datetime(2025, 1, 1, tzinfo=UTC)  # fixed: the same command gives the same customers and scores
CROSS_SELL = CrossSell("books", "music", 0.5)  # planted, for the cross-sell rules to find
RULES_WAIT_SECONDS = 45.0  # the rules follow the population every PULSE_PURCHASE_FIT_SECONDS (30 s)


def _counts(values: Any) -> str:
    return " · ".join(f"{name} {count}" for name, count in Counter(values).most_common())


def run_demo(settings: Settings, *, customers: int, days: int, seed: int, timeout: float, keep_worker: bool,
             serve_port: int | None, say: Callable[[str], None] = print) -> bool:
    say("== 1/5 services")
    for service in services.up(settings, say=say):
        say("   " + service.line())

    say("== 2/5 worker")
    log_dir = settings.data_dir / "logs"
    worker = WorkerProcess(worker_env(), log_dir / "demo-worker.log", settings.web_port).start()
    say(f"   worker up (web http://127.0.0.1:{settings.web_port}/health/, log {log_dir / 'demo-worker.log'})")
    try:
        spec = PopulationSpec(customers=customers, days=days, start=START, seed=seed,
                              prefix=f"demo{seed}-{customers}x{days}")
        events, hidden = generate(spec)
        events, planted = plant_cross_sell(events, CROSS_SELL, seed)
        say(f"== 3/5 producing {len(events):,} events of {customers} customers over {days} days "
            f"({sum(t.churns for t in hidden)} of them stop buying; {len(planted)} purchases of "
            f"{CROSS_SELL.consequent} planted after {CROSS_SELL.antecedent}), +{len(BAD_RECORDS)} malformed records "
            f"for {settings.topic('events.dlq')}")
        records = event_records(events) + [(b"bad", raw) for raw in BAD_RECORDS]
        asyncio.run(produce(settings.kafka, settings.topic("events"), records))

        say("== 4/5 waiting until every record is processed and every score has settled in Redis")
        started = time.monotonic()

        def progress(lag: int) -> None:
            say(f"   {lag:,} records to go ({time.monotonic() - started:.0f} s)")

        behind = asyncio.run(wait_until_processed(settings.kafka, processing_groups(settings), timeout,
                                                  progress=_every(progress, 5.0),
                                                  settle=IDLE_SECONDS + settings.sweep_seconds + 2))
        if behind:
            raise InfraError(f"the worker did not catch up within {timeout:.0f}s ({sum(behind.values())} records "
                             f"behind); see {log_dir / 'demo-worker.log'}")
        ok = _summary(settings, events, say)
    finally:
        if keep_worker:
            say(f"   worker left running (pid {worker.proc.pid if worker.proc else '?'})")
        else:
            worker.stop()
    if serve_port is not None:
        _serve(settings, serve_port, sorted({e["customer_id"] for e in events})[0], say)
    return ok


def _summary(settings: Settings, events: list[dict[str, Any]], say: Callable[[str], None]) -> bool:
    expected = batch_raw_rfm(events)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    pipe = client.pipeline(transaction=False)
    for customer_id in expected:
        pipe.hgetall(customer_key(customer_id))
    rows = dict(zip(expected, pipe.execute(), strict=True))
    exact = sum(1 for cid, row in rows.items() if row and int(row.get("orders", -1)) == expected[cid].orders
                and Decimal(row.get("monetary", "nan")) == expected[cid].monetary)
    ours = set(expected)
    entries: Any = client.xrange(f"{KEY_PREFIX}alerts")
    alerts = [fields for _, fields in entries or [] if fields.get("customer_id") in ours]
    as_of = max((row.get("as_of_event_time", "") for row in rows.values()), default="")
    say(f"== 5/5 what Customer Pulse knows (event time up to {as_of[:10]})")
    say(f"   segments      {_counts(row.get('segment', 'no purchase yet') for row in rows.values())}")
    say(f"   value tiers   {_counts(row.get('value_tier', '-') for row in rows.values())}")
    say(f"   lifecycle     {_counts(row.get('lifecycle', '-') for row in rows.values())}")
    say(f"   churn risk    {_counts(row.get('churn_risk', 'not scored') for row in rows.values())}")
    say(f"   alerts        {_counts(a['kind'] for a in alerts) or 'none'}")
    at_risk = sorted((row for row in rows.values() if row.get("churn_probability")),
                     key=lambda row: -float(row["churn_probability"]))[:5]
    say("   most at risk:")
    for row in at_risk:
        say(f"     {row['customer_id']:<22} {float(row['churn_probability']):.2f} {row.get('churn_risk', ''):<6} "
            f"{row.get('segment', ''):<20} {row.get('churn_reasons', '')[:70]}")
    say(f"   cross-sell    {_rules(client, sum(e['type'] == 'purchase' for e in events))}")
    say(f"   clusters      {_clusters(client)}")
    say(f"   {exact}/{len(expected)} customers' orders and monetary in Redis equal the batch computation "
        "over the same events")
    return exact == len(expected)


def _rules(client: redis.Redis, purchases: int) -> str:
    """The strongest cross-sell rules, once the workers derived them over every purchase."""
    deadline, document = time.monotonic() + RULES_WAIT_SECONDS, None
    while time.monotonic() < deadline:
        stored = client.get(AFFINITY_KEY)
        document = json.loads(str(stored)) if stored else None
        if document is not None and document["purchases"] >= purchases:
            break
        time.sleep(1.0)
    if document is None or not document["rules"]:
        return "no rules yet (pulse affinity shows them once derived)"
    return ", ".join(f"{r['if']} -> {r['then']} lift {r['lift']:.2f}" for r in document["rules"][:3]) + \
        f" (over {document['purchases']:,} purchases; pulse affinity)"


def _clusters(client: redis.Redis) -> str:
    """The behavioural clusters as published (by the time the rules are, so are they)."""
    stored = client.get(CLUSTERS_KEY)
    if not stored:
        return "none yet (pulse clusters shows them once fitted)"
    document = json.loads(str(stored))
    parts = [f"{c['id']}: {', '.join(c['description'].split(', ')[:2])}" for c in document["clusters"]]
    return f"{document['k']} behaviour clusters: " + "; ".join(parts) + " (pulse clusters)"


def _serve(settings: Settings, port: int, example: str, say: Callable[[str], None]) -> None:
    token = settings.api_token_list()[0] if settings.api_tokens else secrets.token_urlsafe(24)
    log_file = settings.data_dir / "logs" / "demo-serve.log"
    with open(log_file, "ab") as out:
        server = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(port)],
                                  env={**os.environ, "PULSE_API_TOKENS": token}, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    failed = api_answers(server, base)
    if failed:
        server.terminate()
        say(f"   {failed} (see {log_file}); try: .venv/bin/pulse serve --port {port}")
        return
    say(f"== the lookup API and dashboard keep running (pid {server.pid}; stop: kill {server.pid})")
    say(f"   dashboard  {base}/#token={token}")
    say(f"   lookup     curl -s -H 'Authorization: Bearer {token}' {base}/v1/customers/{example}")
    say(f"   API docs   {base}/docs")


def _every(report: Callable[[int], None], seconds: float) -> Callable[[int], None]:
    last = [0.0]

    def maybe(lag: int) -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            report(lag)

    return maybe
