"""`pulse up`, `pulse status` and `pulse down`: start what is missing, report, stop only our own."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from stream.infra import kafka as kafka_infra
from stream.infra import redis as redis_infra
from stream.infra.process import InfraError, port_open, stop
from stream.infra.secure import ensure_setup
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


def status(settings: Settings, secure: bool = False) -> list[ServiceStatus]:
    """Whether the configured Kafka and Redis answer, and whether this data dir's `pulse up`
    (or `pulse up --secure`) started them. (Secured ones answer only with the client settings of
    their ``pulse.env``.)"""
    home = secure_home(settings) if secure else settings.data_dir
    rows = []
    ours = kafka_infra.our_kafka(home)
    up = kafka_infra.kafka_ready(settings.kafka)
    rows.append(ServiceStatus("kafka", settings.kafka_bootstrap, up,
                              f"pulse (pid {ours.pid})" if ours else ("external" if up else "-")))
    ours_r = redis_infra.our_redis(home)
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


def down(settings: Settings, names: tuple[str, ...] = ("redis", "kafka"), secure: bool = False) -> dict[str, str]:
    """Stop only the services this data dir's `pulse up` (or `pulse up --secure`) started (by recorded pid)."""
    home = secure_home(settings) if secure else settings.data_dir
    return {name: stop(home, name) for name in names}


def secure_home(settings: Settings) -> Path:
    """Data, certificates and credentials of the secured local services."""
    return settings.data_dir / "secure"


def up_secure(settings: Settings, say: Callable[[str], None] = print) -> Path:
    """Start Kafka with a SASL_SSL listener (SCRAM-SHA-512) and Redis with TLS and a password on the
    configured addresses, with data of their own and a generated CA; write the client settings
    to ``<data dir>/secure/pulse.env`` (owner-only) and return its path. Idempotent."""
    home = secure_home(settings).resolve()
    setup = ensure_setup(home / "tls")
    redis_address = urlparse(settings.redis_url)
    redis_host, redis_port = redis_address.hostname or "127.0.0.1", redis_address.port or 6379
    env = setup.env(settings.kafka_bootstrap, redis_host, redis_port)
    for name, ours, (host, port) in (("kafka", kafka_infra.our_kafka(home), settings.kafka_hosts[0]),
                                     ("redis", redis_infra.our_redis(home), (redis_host, redis_port))):
        if ours is None and port_open(host, port):
            raise InfraError(f"{host}:{port} is in use, so the secured {name} cannot start there: stop what "
                             f"listens (`pulse down`) or choose another PULSE_{name.upper()}_"
                             f"{'BOOTSTRAP' if name == 'kafka' else 'URL'}")
    if kafka_infra.our_kafka(home) is None:
        kafka_infra.start_kafka(settings.kafka_bootstrap, home, settings.partitions, say=say, secure=setup)
    if redis_infra.our_redis(home) is None:
        redis_infra.start_redis(env["PULSE_REDIS_URL"], home, say=say, secure=setup)
    env_file = home / "pulse.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items()))
    return env_file
