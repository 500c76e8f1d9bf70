"""`pulse up`, `pulse status` and `pulse down`: start what is missing, report, stop only our own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stream.infra import kafka as kafka_infra
from stream.infra import redis as redis_infra
from stream.infra.process import stop
from stream.settings import Settings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    running: bool
    owner: str  # "pulse (pid N)", "external" or "-"

    def line(self) -> str:
        state = "running" if self.running else "down"
        return f"{self.name:<6} {self.address:<28} {state:<8} {self.owner}"


def status(settings: Settings) -> list[ServiceStatus]:
    rows = []
    ours = kafka_infra.our_kafka(settings.data_dir)
    up = kafka_infra.kafka_ready(settings.kafka)
    rows.append(ServiceStatus("kafka", settings.kafka_bootstrap, up,
                              f"pulse (pid {ours.pid})" if ours else ("external" if up else "-")))
    ours_r = redis_infra.our_redis(settings.data_dir)
    up_r = redis_infra.redis_ready(settings.redis_url)
    rows.append(ServiceStatus("redis", settings.redis_display, up_r,
                              f"pulse (pid {ours_r.pid})" if ours_r else ("external" if up_r else "-")))
    return rows


def up(settings: Settings, say: Callable[[str], None] = print) -> list[ServiceStatus]:
    """Start Kafka and Redis unless the configured addresses already answer. Idempotent."""
    if kafka_infra.kafka_ready(settings.kafka):
        say(f"kafka  already running at {settings.kafka_bootstrap}")
    else:
        kafka_infra.start_kafka(settings.kafka_bootstrap, settings.data_dir, settings.partitions, say=say)
    if redis_infra.redis_ready(settings.redis_url):
        say(f"redis  already running at {settings.redis_display}")
    else:
        redis_infra.start_redis(settings.redis_url, settings.data_dir, say=say)
    return status(settings)


def down(settings: Settings, names: tuple[str, ...] = ("redis", "kafka")) -> dict[str, str]:
    """Stop only the services this data dir's `pulse up` started (by recorded pid)."""
    return {name: stop(settings.data_dir, name) for name in names}
