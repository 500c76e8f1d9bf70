"""Population-relative RFM scoring across workers: each worker publishes its partitions'
shares of the population to the compacted ``pulse.rfm-population`` topic (compressed, in
chunks: ``stream/core/shares.py``) and reads every other worker's from it (the book itself, and
how rescoring works: ``stream/core/population.py``).

Every ``PULSE_PURCHASE_FIT_SECONDS`` each worker also refits the purchase model
(``stream/core/purchase.py``) over the merged population when it changed, in a child process so
the event loop goes on, and writes it to Redis (``pulse:purchase-model``) for readers that
compute outlooks as of the model's now (``pulse export``, the lookup API). At the same pace it
derives the cross-sell rules of the merged population (``stream/core/affinity.py``), which the
profiles' ``next_best_categories`` use, and writes them to Redis (``pulse:affinity``), and refits
the behavioural clusters over the merged behaviour sample (``stream/core/clusters.py``), from the
previous centroids so that ids stay put: each refit starts from the clusters last published in
Redis (``pulse:clusters``) by any worker, so ids agree across workers and survive restarts."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from agents.batching import gather_sends
from agents.context import Pulse
from agents.fit_process import FitProcess, FitProcessError
from agents.follow import follow
from agents.publish import get_json, set_json
from agents.record_batches import kafka_producer, send_batched
from stream.core.affinity import ANY, affinity_document, rules
from stream.core.clusters import FitError as ClusterFitError
from stream.core.clusters import fit as fit_clusters
from stream.core.clusters import starting_point
from stream.core.population import PopulationBook
from stream.core.purchase import FitError
from stream.core.purchase_outlook import fit_population
from stream.core.rfm import MONETARY_RESOLUTION, Population
from stream.core.shares import ShareReader, share_records
from stream.sinks.outbox import MAX_RECORD_BYTES
from stream.sinks.redis import AFFINITY_KEY, CLUSTERS_KEY, PURCHASE_MODEL_KEY

log = logging.getLogger(__name__)


async def publish_share(producer: Any, topic: str, partition: int, population: Population, shares: ShareReader,
                        max_chunk: int = MAX_RECORD_BYTES) -> int:
    """Send a partition's share (``stream/core/shares.py``: compressed, in chunks) to the topic's one
    partition, in order, and wait for the broker's acknowledgements; returns the records sent."""
    records = share_records(partition, population, shares.live(partition), max_chunk)
    await gather_sends(await send_batched(producer, [(topic, 0, key, value) for key, value in records]))
    return len(records)


def register(pulse: Pulse, book: PopulationBook) -> None:
    app = pulse.app
    topic = pulse.settings.topic("rfm-population")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the handler more narrowly than it calls it
    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        book.forget_all()

    shares = ShareReader()  # every share read, and which keys hold one (a publication tombstones stale ones)

    @app.timer(interval=pulse.settings.rescore_seconds)
    async def publish_population() -> None:
        for partition in sorted(book.dirty):
            index = book.local.get(partition)
            book.dirty.discard(partition)
            if index is None:
                continue
            try:
                await publish_share(kafka_producer(app), topic, partition, index.population, shares)
            except Exception as exc:  # noqa: BLE001 - tried again at the next interval, not lost
                book.dirty.add(partition)
                log.warning("rfm population: publishing partition %d's share failed (%s: %s); trying again in "
                            "%.0f s", partition, type(exc).__name__, exc, pulse.settings.rescore_seconds)

    @app.task
    async def read_population() -> None:
        # Every worker reads every partition's share.
        def on_share(record: Any) -> None:
            share = shares.add(record.key, record.value)
            if share is not None:
                book.on_remote(*share)

        await follow(pulse.settings.kafka, topic, on_share, start="beginning", what="rfm population")

    fitted: dict[str, Any] = {"inputs": None, "published": False}
    published_rules: dict[str, Any] = {"document": None}

    clustered: dict[str, Any] = {"sample": None, "published": None}
    fits = FitProcess()  # off the worker's interpreter: a fit in a thread slowed the event loop (agents/fit_process.py)

    async def refit_clusters(sample: dict[str, tuple[float, ...]]) -> None:
        stored = await get_json(pulse.settings, CLUSTERS_KEY, "behavioural clusters")
        start, passed_over = starting_point(book.clusters, stored, pulse.settings.clusters, clustered["published"])
        if passed_over:
            log.warning("clusters: %s", passed_over)
        if start is not None and start is not book.clusters:
            if book.clusters is None:
                log.info("clusters: starting from the published %s (%d clusters)", start.version, start.k)
            book.clusters = start
            clustered["published"] = start.version
        if sample and sample != clustered["sample"]:
            started = time.monotonic()
            try:
                book.clusters = await fits.run(fit_clusters, list(sample.values()), book.clusters,
                                               pulse.settings.clusters)
            except ClusterFitError as exc:
                log.info("clusters: not fitted yet: %s", exc)
                return
            except FitProcessError as exc:
                log.warning("clusters: %s (the last clusters stay in use)", exc)
                return
            clustered["sample"] = sample
            log.info("clusters %s fitted over %d sampled customers in %.2f s", book.clusters.version,
                     book.clusters.sample, time.monotonic() - started)
        if book.clusters is not None and book.clusters.version != clustered["published"]:
            document = {**book.clusters.to_json(), "fitted_at": datetime.now(UTC).isoformat()}
            if await set_json(pulse.settings, CLUSTERS_KEY, document, "behavioural clusters"):
                clustered["published"] = book.clusters.version

    @app.timer(interval=pulse.settings.purchase_fit_seconds)
    async def refit_population_models() -> None:
        merged = book.merged()  # once for all: the clusters, the cross-sell rules, then the purchase model
        try:  # before the rules: readers that saw the rules find them
            await refit_clusters(dict(merged.behaviour))
        except Exception:  # noqa: BLE001 - a clustering failure must not stop the rules, the purchase model or the worker
            log.exception("clusters: refit failed (the last clusters stay in use)")
        book.affinity = rules(merged.category_orders, merged.follows)
        document = affinity_document(merged.category_orders.get(ANY, 0), book.affinity)
        if document != published_rules["document"] and await set_json(pulse.settings, AFFINITY_KEY, document,
                                                                        "cross-sell rules"):
            published_rules["document"] = document
        purchases, spend = dict(merged.purchases), dict(merged.spend)  # copies: fitted off the loop
        if purchases and purchases != fitted["inputs"]:
            started = time.monotonic()
            try:
                book.purchase = await fits.run(fit_population, purchases, spend, MONETARY_RESOLUTION,
                                               float(pulse.settings.churn_horizon_days))
            except FitError as exc:
                log.info("purchase model: not fitted yet: %s", exc)
                return
            except FitProcessError as exc:
                log.warning("purchase model: %s (the last model stays in use)", exc)
                return
            fitted.update(inputs=purchases, published=False)
            log.info("purchase model %s fitted over %d customers in %.2f s: %s", book.purchase.version,
                     book.purchase.customers, time.monotonic() - started, book.purchase.to_json())
        if book.purchase is not None and not fitted["published"]:
            fitted["published"] = await set_json(pulse.settings, PURCHASE_MODEL_KEY, book.purchase.to_json(),
                                                 "purchase model")

