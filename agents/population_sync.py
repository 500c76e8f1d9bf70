"""Population-relative RFM scoring across workers: each worker publishes its partitions'
shares of the population to the compacted ``pulse.rfm-population`` topic and reads every
other worker's from it (the book itself, and how rescoring works: ``stream/core/population.py``)."""

from __future__ import annotations

import json
from typing import Any

from agents.context import Pulse
from agents.follow import follow
from stream.core.population import PopulationBook
from stream.core.rfm import Population


def register(pulse: Pulse, book: PopulationBook) -> None:
    app = pulse.app
    topic = pulse.settings.topic("rfm-population")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the handler more narrowly than it calls it
    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        book.forget_all()

    @app.timer(interval=pulse.settings.rescore_seconds)
    async def publish_population() -> None:
        for partition in sorted(book.dirty):
            index = book.local.get(partition)
            book.dirty.discard(partition)
            if index is None:
                continue
            value = {"partition": partition, "population": index.population.to_json()}
            await pulse.topic("rfm-population").send(key=f"p{partition}".encode(), value=json.dumps(value).encode())

    @app.task
    async def read_population() -> None:
        # Every worker reads every partition's share.
        def on_share(record: Any) -> None:
            data = json.loads(record.value)
            book.on_remote(int(data["partition"]), Population.from_json(data["population"]))

        await follow(pulse.settings.kafka_bootstrap, topic, on_share, start="beginning", what="rfm population")
