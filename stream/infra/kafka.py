"""A real single-node Apache Kafka (KRaft, broker+controller) on loopback, from Maven Central jars."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from stream.infra.process import (
    InfraError,
    ServiceRecord,
    is_alive,
    is_loopback,
    load_record,
    port_open,
    spawn,
    wait_ready,
)
from stream.infra.secure import KAFKA_USER, SecureSetup
from stream.io.connect import KafkaAccess

KAFKA_VERSION = "3.9.1"
SERVICE = "kafka"
JAVA_HINT = "Install a Java 17+ runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)."


def cache_dir() -> Path:
    """Jars are shared by every checkout: ``$PULSE_CACHE_DIR`` or ``~/.cache/customer-pulse``."""
    configured = os.environ.get("PULSE_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "customer-pulse"


def classpath_dir() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def _require(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise InfraError(f"`{tool}` was not found on PATH; the local Kafka needs it. {hint}")
    return found


def ensure_classpath(say: Callable[[str], None] = print) -> Path:
    """Resolve the broker's jars with Maven once; later runs reuse the cache."""
    libs = classpath_dir()
    if (libs / ".complete").exists():
        return libs
    mvn = _require("mvn", "Install Maven (Debian/Ubuntu: apt-get install maven).")
    _require("java", JAVA_HINT)
    staging = libs.parent / f"libs.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    say(f"resolving Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} (once) ...")
    with resources.as_file(resources.files("stream.infra") / "kafka-pom.xml") as pom:
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), f"-Dkafka.version={KAFKA_VERSION}",
             "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
            capture_output=True, text=True,
        )
    if proc.returncode != 0 or not any(staging.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError(
            "Maven could not resolve the Kafka jars (is Maven Central reachable?):\n"
            + (proc.stdout + proc.stderr)[-3000:]
        )
    (staging / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


async def _metadata_ok(kafka: KafkaAccess, timeout: float) -> bool:
    import logging

    from aiokafka.client import AIOKafkaClient

    # A refused connection is an answer here ("not running"), not an error to log.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    client = AIOKafkaClient(**kafka.options(), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return True
    except Exception:
        return False
    finally:
        await client.close()


def kafka_ready(kafka: KafkaAccess, timeout: float = 3.0) -> bool:
    """Ready means a metadata request succeeds."""
    return asyncio.run(_metadata_ok(kafka, timeout))


def server_properties(host: str, port: int, controller_port: int, log_dir: Path,
                      partitions: int, secure: SecureSetup | None = None) -> str:
    listener = "SASL_SSL" if secure else "PLAINTEXT"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{controller_port}",
        f"listeners={listener}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners={listener}://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        f"inter.broker.listener.name={listener}",
        f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
        *(_secure_properties(secure) if secure else []),
        f"log.dirs={log_dir}",
        f"num.partitions={partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "delete.topic.enable=true",
        # let oversized producer records reach the validator, which dead-letters them
        "message.max.bytes=16777216",
        "replica.fetch.max.bytes=16777216",
        "",
    ])


def _secure_properties(secure: SecureSetup) -> list[str]:
    """SCRAM-SHA-512 over TLS for clients and the broker itself (the controller listener stays
    on loopback); the broker's credentials are the same user's, made at format time."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{KAFKA_USER}" '
            f'password="{secure.kafka_password}";')
    return ["sasl.enabled.mechanisms=SCRAM-SHA-512", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM", f"ssl.keystore.location={secure.server_pem}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={secure.ca_file}", "ssl.client.auth=none"]


def start_kafka(bootstrap: str, data_dir: Path, partitions: int, *, timeout: float = 120.0,
                say: Callable[[str], None] = print, secure: SecureSetup | None = None) -> ServiceRecord:
    """Start a local broker; with ``secure``, its one client listener is SASL_SSL (SCRAM-SHA-512)."""
    host, port_text = bootstrap.split(",")[0].rsplit(":", 1)
    host, port = host.strip("[]"), int(port_text)
    if not is_loopback(host):
        raise InfraError(
            f"PULSE_KAFKA_BOOTSTRAP={bootstrap} does not answer and is not a loopback address; "
            "`pulse up` only starts Kafka on this machine. Start that cluster, or unset the "
            "variable to use the embedded default 127.0.0.1:9092."
        )
    controller_port = port + 1
    if port_open(host, controller_port):
        raise InfraError(
            f"port {controller_port} (the KRaft controller port, Kafka port + 1) is in use; "
            f"choose another PULSE_KAFKA_BOOTSTRAP port."
        )
    libs = ensure_classpath(say)
    java = _require("java", JAVA_HINT)
    home = (data_dir / "kafka").resolve()
    log_dir = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    cluster_file = home / "cluster.id"
    if not cluster_file.exists():
        cluster_file.write_text(new_cluster_id())
    cluster_id = cluster_file.read_text().strip()
    props = home / "server.properties"
    props.write_text(server_properties(host, port, controller_port, log_dir, partitions, secure))
    props.chmod(0o600)  # with ``secure`` it holds the broker's password
    log4j = home / "log4j.properties"
    log4j.write_text((resources.files("stream.infra") / "log4j.properties").read_text())
    base = [java, "-Xms256m", "-Xmx1g", f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={home / 'logs'}", "-cp", f"{libs}/*"]
    fmt = subprocess.run(
        base + ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props),
                "--ignore-formatted",
                *(["--add-scram", f"SCRAM-SHA-512=[name={KAFKA_USER},password={secure.kafka_password}]"]
                  if secure else [])],
        capture_output=True, text=True,
    )
    if fmt.returncode != 0:
        raise InfraError(f"formatting the Kafka log dir failed:\n{fmt.stdout}{fmt.stderr}")
    log_file = home / "logs" / "server.out"
    say(f"starting Apache Kafka {KAFKA_VERSION} (KRaft) on {host}:{port} ...")
    record = spawn(SERVICE, base + ["kafka.Kafka", str(props)], data_dir=data_dir,
                   address=f"{host}:{port}", log_file=log_file)
    access = KafkaAccess(f"{host}:{port}", "SASL_SSL", "SCRAM-SHA-512", KAFKA_USER, secure.kafka_password,
                         secure.ca_file) if secure else KafkaAccess(f"{host}:{port}")
    return wait_ready(record, lambda: port_open(host, port) and kafka_ready(access),
                      what="Kafka", answer="a metadata request", timeout=timeout)


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with ``-``: the storage tool's
    argument parser would read it as an option.

    >>> new_cluster_id(iter([b"\\xfb" * 16, b"\\x01" * 16]).__next__)
    'AQEBAQEBAQEBAQEBAQEBAQ'
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def our_kafka(data_dir: Path) -> ServiceRecord | None:
    record = load_record(data_dir, SERVICE)
    return record if record is not None and is_alive(record) else None
