"""HTTP views of the worker: health, counters, watermark, population, model, Prometheus
``/metrics``, and one customer's table state (routed to the owning worker)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientTimeout
from yarl import URL

from agents.context import Pulse
from stream.api.tokens import bearer, token_matches
from stream.core.counters import totals
from stream.core.owner import owner_partition
from stream.core.watermark import watermark
from stream.infra.metrics import CONTENT_TYPE
from stream.io.replay import group_lags
from stream.topology import processing_groups

log = logging.getLogger(__name__)
LAG_TIMEOUT_SECONDS = 3.0


def register(pulse: Pulse) -> None:
    app = pulse.app
    table = pulse.table("customer-state")

    def restoring() -> bool:
        # Faust restores the tables from their changelogs between a rebalance and "Worker ready"
        # (app.rebalancing stays set until then): a table read meanwhile may see a customer's
        # older record before the tombstone that erased them
        return bool(app.rebalancing or getattr(app, "in_recovery", False))

    @app.page("/health/")
    async def health(web, request):  # type: ignore[no-untyped-def]
        # the customer-events partitions (so the customers) this worker owns right now
        topic = pulse.topic("customer-events").get_topic_name()
        owned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)
        return web.json({"status": "ok", "app_id": pulse.settings.app_id, "partitions": owned,
                         "rebalancing": bool(app.rebalancing), "recovering": restoring()})

    @app.page("/counters/")
    async def counters(web, request):  # type: ignore[no-untyped-def]
        # This worker's partitions only; with several workers, sum their answers.
        items = list(pulse.table("ingest-counters").items()) + list(pulse.table("profile-counters").items())
        return web.json(totals(items))

    @app.page("/watermark/")
    async def event_time_watermark(web, request):  # type: ignore[no-untyped-def]
        # This worker's partitions; the app's watermark is the minimum over all workers.
        maxima = {key: int(value) for key, value in pulse.table("event-time-maxima").items()}
        mark = watermark(maxima.values(), pulse.settings.dedup_policy().lateness)
        newest = {k: datetime.fromtimestamp(v, UTC).isoformat() for k, v in sorted(maxima.items())}
        return web.json({"watermark": mark.isoformat() if mark else None,
                         "partition_max_event_time": newest})

    @app.page("/rfm/")
    async def rfm_population(web, request):  # type: ignore[no-untyped-def]
        # Population scoring: the merged population, its cut points, and for each partition
        # of this worker the cuts its scores were computed with ("settled" when current).
        return web.json(pulse.population.status())

    @app.page("/model/")
    async def churn_model(web, request):  # type: ignore[no-untyped-def]
        # The newest published churn model this worker scores with (null: heuristic only).
        model = pulse.model
        if model is None:
            return web.json({"model_version": None, "ready": False})
        return web.json({"model_version": model.model_version, "ready": model.ready,
                         "labels_seen": model.labels_seen, "river_version": model.river_version,
                         "metrics": model.metrics, "weights": model.weights})

    lag: dict[str, Any] = {"clients": None, "latest": None}

    async def read_lags() -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if lag["clients"] is None:
            admin = AIOKafkaAdminClient(**pulse.settings.kafka.options())
            consumer = AIOKafkaConsumer(**pulse.settings.kafka.options())
            await admin.start()
            await consumer.start()
            lag["clients"] = (admin, consumer)
        admin, consumer = lag["clients"]
        try:
            lag["latest"] = await asyncio.wait_for(group_lags(admin, consumer, processing_groups(pulse.settings)),
                                                   LAG_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when Kafka does not
            log.warning("metrics: consumer lag not read (%s: %s)", type(exc).__name__, exc)
            lag["latest"] = None

    def model_figures() -> dict[str, Any] | None:
        model = pulse.model
        return None if model is None else {"metrics": model.metrics, "labels_seen": model.labels_seen,
                                           "ready": model.ready}

    pulse.metrics.read_at_scrape(
        counters=lambda: list(pulse.table("ingest-counters").items()) + list(pulse.table("profile-counters").items()),
        model=model_figures, lags=lambda: lag["latest"])

    @app.page("/metrics")
    async def metrics(web, request):  # type: ignore[no-untyped-def]
        await read_lags()
        return web.bytes(pulse.metrics.render(), headers={"Content-Type": CONTENT_TYPE})  # aiohttp: no charset arg

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types the handler more narrowly
    async def close_lag_clients(sender: Any, **kwargs: Any) -> None:
        if lag["clients"] is not None:
            admin, consumer = lag["clients"]
            await consumer.stop()
            await admin.close()

    tokens = pulse.settings.api_token_list()
    changelog = table.changelog_topic.get_topic_name()

    def owner(customer_id: str) -> URL | None:
        # A state lives in the partition of its customer's events (the producers' partitioner
        # on the raw id), not where Faust's table_route would look (its JSON-encoded key).
        partition = owner_partition(customer_id, pulse.settings.partitions)
        for url, topics in app.router.table_metadata(table.name).items():
            if partition in topics.get(changelog, ()):
                return URL(url)
        return None

    @app.page("/customers/{customer_id}/")
    async def customer(web, request, customer_id):  # type: ignore[no-untyped-def]
        # any customer's whole state: only with a token of the lookup API
        if not token_matches(bearer(request.headers.get("Authorization")), tokens):
            reason = "a valid bearer token (PULSE_API_TOKENS) is required" if tokens else \
                "set PULSE_API_TOKENS on the workers and send one as a bearer token"
            return web.json({"error": f"unauthorized: {reason}"}, status=401, headers={"WWW-Authenticate": "Bearer"})
        if restoring():
            return web.json({"error": "this worker's tables are being restored (rebalancing); retry shortly"},
                            status=503, headers={"Retry-After": "1"})
        holder, here = owner(customer_id), URL(str(app.conf.canonical_url))
        if holder is None:
            return web.json({"error": "no worker holds this customer's partition right now (rebalancing)"},
                            status=503, headers={"Retry-After": "1"})
        if (holder.host, holder.port) != (here.host, here.port):  # ask the worker that holds it
            routed = request.url.with_host(holder.host).with_port(holder.port)
            async with app.http_client.get(routed, headers={"Authorization": request.headers["Authorization"]},
                                           timeout=ClientTimeout(total=10)) as response:
                return web.text(await response.text(), content_type=response.content_type, status=response.status)
        stored = table.get(customer_id)
        if stored is None:
            return web.json({"error": f"unknown customer {customer_id}"}, status=404)
        return web.json(json.loads(stored))
