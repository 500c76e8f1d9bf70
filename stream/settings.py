"""Runtime settings: one pydantic-settings class read from ``PULSE_*`` environment variables."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, IPvAnyAddress, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.core.churn import ChurnConfig
from stream.core.dedup import DedupPolicy
from stream.core.pseudonym import pseudonym
from stream.core.validate import ValidationRules
from stream.io.connect import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaAccess, redacted

ENV_PREFIX = "PULSE_"

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._\-]{0,100}$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-_.~]{16,200}$")
_APP_ID = re.compile(r"^[A-Za-z0-9._\-]{1,100}$")
_CHOICES = {"kafka_security_protocol": SECURITY_PROTOCOLS, "kafka_sasl_mechanism": SASL_MECHANISMS}
_MODES = {"churn_model": ("shadow", "auto"), "churn_warn_by": ("either", "served"),
          "event_loop": ("uvloop", "asyncio")}  # lower case


def _bounded(default: float, lo: float, hi: float, *, description: str, unit: str = "", also: str = "") -> Any:
    """A numeric setting from ``lo`` to ``hi``, whose accepted form (shown in errors) says so."""
    kind = "an integer" if isinstance(default, int) else "a number"
    form = f"{kind} from {lo} to {hi}" + (f" ({unit})" if unit else "") + (f", {also}" if also else "")
    return Field(default, ge=lo, le=hi, description=description, json_schema_extra={"form": form})


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and the accepted form."""


class Settings(BaseSettings):
    """Everything a worker or the CLI needs to know, from ``PULSE_*`` variables.

    >>> s = Settings(kafka_bootstrap="localhost:19092", partitions=2)
    >>> s.kafka_hosts
    [('localhost', 19092)]
    >>> s.topic("events")
    'pulse.events'
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers, comma-separated host:port.",
        json_schema_extra={"form": "host:port[,host:port...]"},
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="How clients connect to Kafka: TLS (SSL), SASL, both, or neither.",
        json_schema_extra={"form": "one of " + ", ".join(SECURITY_PROTOCOLS)})
    kafka_sasl_mechanism: str = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with SASL_SSL or SASL_PLAINTEXT).",
        json_schema_extra={"form": "one of " + ", ".join(SASL_MECHANISMS)})
    kafka_sasl_username: str = Field(
        "", description="SASL user (with SASL_SSL or SASL_PLAINTEXT).", json_schema_extra={"form": "a user name"})
    kafka_sasl_password: str = Field(
        "", repr=False, description="SASL password (with SASL_SSL or SASL_PLAINTEXT); never printed.",
        json_schema_extra={"form": "the user's password", "secret": True})
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA certificate(s) that signed the brokers' TLS certificates (SSL, SASL_SSL); "
                          "default: the system's trust store.", json_schema_extra={"form": "a PEM file"})
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        repr=False,  # it may carry a password
        description="Redis (or Valkey) URL.",
        json_schema_extra={"form": "redis://[user:password@]host:port/db or rediss://... or unix://path"},
    )
    topic_prefix: str = Field(
        "pulse.",
        description="Prefix of every Kafka topic and of the Faust app's internal topics.",
        json_schema_extra={"form": "letters, digits, '.', '_' or '-', at most 100 characters"},
    )
    app_id: str = Field(
        "customer-pulse",
        description="Faust application id: the consumer group and the changelog topic names.",
        json_schema_extra={"form": "letters, digits, '.', '_' or '-', 1-100 characters"},
    )
    data_dir: Path = Field(
        Path(".pulse"),
        description="Where the worker keeps RocksDB tables and `pulse up` keeps Kafka/Redis data.",
        json_schema_extra={"form": "a directory path"},
    )
    partitions: int = _bounded(
        4, 1, 1024,
        description="Partitions of the topics the app creates (events, tables, outputs).")
    web_port: int = _bounded(
        6066, 1, 65535,
        description="Port of the worker's HTTP views (health, customer lookups).")
    web_bind: IPvAnyAddress = Field(
        "127.0.0.1",  # type: ignore[assignment]  # validated into an address
        description="Address the worker's HTTP views listen on (loopback: its customer view shows any customer's "
                    "state).", json_schema_extra={"form": "an IP address, e.g. 127.0.0.1 or 0.0.0.0"})
    kafka_session_timeout_seconds: int = _bounded(
        15, 6, 90, unit="seconds",
        description="How long Kafka's consumer groups wait for a silent worker (killed, hung, cut off) before "
                    "its partitions move to the others: the failover time after a crash.")
    standby_replicas: int = _bounded(
        0, 0, 10,
        description="Standby replicas of each table kept by other workers for fast failover.")
    rocksdb_write_buffer_mb: int = _bounded(
        2, 1, 1024, unit="MiB",
        description="RocksDB memtable size of each table partition, of which two are kept: a table's "
                    "writes are held in memory up to this before they are flushed to disk.")
    rocksdb_block_cache_mb: int = _bounded(
        4, 1, 4096, unit="MiB",
        description="RocksDB block cache of each table partition: table data read from disk kept in memory.")
    dedup_max_ids: int = _bounded(
        256, 1, 10000,
        description="Most recent event ids remembered per customer to drop redelivered events.")
    allowed_lateness_seconds: int = _bounded(
        3 * 86_400, 0, 31536000, unit="seconds",
        description="How far behind a customer's newest event time an event may arrive and still "
                    "count; older ones go to the DLQ as too_late.")
    dedup_horizon_seconds: int = _bounded(
        7 * 86_400, 0, 31536000, unit="seconds", also=">= PULSE_ALLOWED_LATENESS_SECONDS",
        description="How long (in event time) an event id is remembered to drop redeliveries; "
                    "at least the allowed lateness.")
    max_event_bytes: int = _bounded(
        64 * 1024, 256, 900000, unit="bytes",
        description="Largest accepted event payload; larger records go to the DLQ as too_large.")
    total_tolerance: Decimal = Field(
        Decimal("0.01"),
        description="Allowed difference between a purchase total and its lines minus discount.",
        json_schema_extra={"form": "a non-negative decimal amount, e.g. 0.01"},
    )
    max_future_seconds: int = _bounded(
        300, 0, 604800, unit="seconds",
        description="How far an event time may be ahead of the processing clock.")
    rules_file: Path | None = Field(
        None,
        description="Tagging rules (YAML); the packaged stream/rules/default.yaml when unset.",
        json_schema_extra={"form": "a path to a YAML rules file"},
    )
    sweep_seconds: int = _bounded(
        5, 1, 3600, unit="seconds",
        description="How often (wall clock) the sweeper applies time-driven tag transitions.")
    rescore_seconds: float = _bounded(
        1.0, 0.1, 3600, unit="seconds",
        description="Population RFM scoring: how often (at most) a partition moves to the merged "
                    "population's cut points and rescores the customers between old and new cuts.")
    backlog_rescore_seconds: float = _bounded(
        10.0, 0.1, 3600, unit="seconds",
        description="Population RFM scoring while a partition works through a backlog: how often (at most) it "
                    "rescores instead (never more often than PULSE_RESCORE_SECONDS): each rescore re-tags the "
                    "customers near a moved cut point, so a backfill that rescores less often raises fewer "
                    "`population` tag changes. Caught up, a partition rescores at the usual pace.")
    purchase_fit_seconds: float = _bounded(
        30.0, 1, 86_400, unit="seconds",
        description="Population scoring: how often (at most) the purchase model (BG/NBD + Gamma-Gamma) is "
                    "refitted over the merged population, when it changed.")
    churn_horizon_days: int = _bounded(
        90, 1, 3650, unit="days",
        description="Churn means no purchase within this many days (H); one-time buyers' usual gap is H/2.")
    churn_threshold: float = Field(
        0.7,
        gt=0,
        lt=1,
        description="A churn_risk alert fires when the churn probability rises to this value.",
        json_schema_extra={"form": "a number strictly between 0 and 1"},
    )
    inactivity_factor: float = _bounded(
        2.0, 1, 20,
        description="An inactivity alert fires when the silence passes this many times the usual gap.")
    alert_cooldown_days: int = _bounded(
        30, 0, 365, unit="days",
        description="At most one alert of each kind per customer within this many days (event time).")
    clusters: int = _bounded(
        5, 0, 8, also="not 1",
        description="Behavioural clusters (k-means over the population's behaviour, refitted at the purchase "
                    "model's pace): how many (2-8), or 0 to choose by silhouette at the first fit. Kept while the "
                    "published clusters (pulse:clusters) have this many, so cluster ids stay stable.")
    identity_link_limit: int = _bounded(
        5, 1, 1000,
        description="Distinct customers one anonymous id (device or cookie) may be linked to by identify events; "
                    "a link beyond it is refused and dead-lettered (merge_storm).")
    holdout_share: float = _bounded(
        0.0, 0.0, 0.5,
        description="Share of customers held out from interventions (a control group, by a hash of the id): "
                    "their alerts carry holdout: true, triggers and the relay skip them, and pulse "
                    "uplift-report compares their outcomes with the treated customers'.")
    model_min_labels: int = _bounded(
        500, 1, 10_000_000,
        description="Labels the online churn model learns before it may replace the heuristic.")
    churn_model: str = Field(
        "auto",
        description="shadow: the online model learns and reports its quality, scores stay the heuristic's; "
                    "auto: workers score with the model while it is ready and ranks the recent labels "
                    "better than the heuristic.",
        json_schema_extra={"form": "shadow or auto"},
    )
    churn_warn_by: str = Field(
        "either",
        description="either: while the online model serves, a churn_risk warning is raised when it or the "
                    "heuristic reaches its threshold (no warning the heuristic would give is lost by the "
                    "switch); served: only the scorer that serves the score warns.",
        json_schema_extra={"form": "either or served"},
    )
    api_tokens: str = Field(
        "",
        repr=False,
        description="Bearer tokens accepted by the lookup API (`pulse serve`), comma-separated.",
        json_schema_extra={"form": "token[,token...], each 16-200 of letters, digits, '-', '_', '.', '~'",
                           "secret": True},
    )
    api_cache_entries: int = _bounded(
        20_000, 0, 10_000_000, unit="answers per pulse serve process",
        description="Batch answers the lookup API keeps, each until its profile is written again or new models "
                    "are published (about 6 KB each); 0: none, every batch decodes and scores each hash.")
    webhook_secret: str = Field(
        "", repr=False, description="Shared secret of the alert relay's HMAC signatures (`pulse alerts relay`).",
        json_schema_extra={"form": "16-200 of letters, digits, '-', '_', '.', '~'", "secret": True})
    pseudonym_key: str = Field(
        "", repr=False, description="With it, customer ids are replaced at ingestion by a keyed hash (HMAC-SHA256): "
                                    "no raw id in tables, derived topics or Redis; unset: raw ids.",
        json_schema_extra={"form": "16-200 of letters, digits, '-', '_', '.', '~'", "secret": True})
    event_loop: str = Field(
        "uvloop",
        description="The worker's event loop: uvloop (libuv; less CPU per event in the worker's Kafka and "
                    "asyncio work) or asyncio (the standard library's).",
        json_schema_extra={"form": "uvloop or asyncio"},
    )
    loop_stall_seconds: float = _bounded(
        2.0, 0, 3600, unit="seconds", also="0: off",
        description="Log a warning, with the stack it is held in, when the worker's event loop has not run for "
                    "this long (every batch and Redis write waits meanwhile); counted in "
                    "pulse_event_loop_stall_seconds.")
    log_level: str = Field(
        "info",
        description="Worker log level.",
        json_schema_extra={"form": "one of debug, info, warning, error"},
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        value = value.strip().removeprefix("kafka://")
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(_HOST_PORT.match(p) for p in parts):
            raise ValueError("expected host:port[,host:port...]")
        for part in parts:
            port = int(part.rsplit(":", 1)[1])
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1-65535")
        return ",".join(parts)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism")
    @classmethod
    def _check_choice(cls, value: str, info: ValidationInfo) -> str:
        value, choices = value.strip().upper(), _CHOICES[info.field_name or ""]
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and not (self.kafka_sasl_username
                                                                     and self.kafka_sasl_password):
            raise PydanticCustomError(
                "sasl", "PULSE_KAFKA_SECURITY_PROTOCOL={protocol} needs PULSE_KAFKA_SASL_USERNAME and "
                "PULSE_KAFKA_SASL_PASSWORD", dict.fromkeys(("protocol", "value"), self.kafka_security_protocol))
        return self

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://host:port/db, rediss://... or unix://path")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError("only letters, digits, '.', '_' and '-' are allowed")
        return value

    @field_validator("app_id")
    @classmethod
    def _check_app_id(cls, value: str) -> str:
        if not _APP_ID.match(value):
            raise ValueError("only letters, digits, '.', '_' and '-' are allowed, 1-100 of them")
        return value

    @model_validator(mode="after")
    def _horizon_covers_lateness(self) -> Settings:
        if self.dedup_horizon_seconds < self.allowed_lateness_seconds:
            raise PydanticCustomError(
                "horizon", "must be at least PULSE_ALLOWED_LATENESS_SECONDS ({lateness})",
                {"lateness": self.allowed_lateness_seconds, "value": self.dedup_horizon_seconds})
        return self

    @field_validator("total_tolerance")
    @classmethod
    def _check_tolerance(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("must be a non-negative finite amount")
        return value

    @field_validator("rules_file", "kafka_ssl_cafile")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("api_tokens", "webhook_secret", "pseudonym_key")
    @classmethod
    def _check_tokens(cls, value: str) -> str:
        tokens = [t.strip() for t in value.split(",") if t.strip()]
        if not all(_TOKEN.match(t) for t in tokens):
            raise ValueError("shorter than 16 characters, longer than 200, or other characters")
        return ",".join(tokens)

    @field_validator("clusters")
    @classmethod
    def _check_clusters(cls, value: int) -> int:
        if value == 1:
            raise ValueError("one cluster says nothing: give 2 to 8, or 0 to choose by silhouette")
        return value

    @field_validator("churn_model", "churn_warn_by", "event_loop")
    @classmethod
    def _check_mode(cls, value: str, info: ValidationInfo) -> str:
        allowed = _MODES[info.field_name or ""]
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be {' or '.join(allowed)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @property
    def kafka_hosts(self) -> list[tuple[str, int]]:
        hosts = []
        for part in self.kafka_bootstrap.split(","):
            host, port = part.rsplit(":", 1)
            hosts.append((host.strip("[]"), int(port)))
        return hosts

    @property
    def kafka(self) -> KafkaAccess:
        """How every Kafka client of the app connects."""
        return KafkaAccess(self.kafka_bootstrap, self.kafka_security_protocol, self.kafka_sasl_mechanism,
                           self.kafka_sasl_username or None, self.kafka_sasl_password or None, self.kafka_ssl_cafile)

    @property
    def group_timing(self) -> dict[str, int]:
        """Session timeout and heartbeat interval (ms) of the app's consumer groups: a heartbeat
        every third of the session, at most every 3 s (aiokafka's and Faust's default)."""
        session_ms = self.kafka_session_timeout_seconds * 1000
        return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": min(3000, session_ms // 3)}

    @property
    def redis_display(self) -> str:
        """``redis_url`` with its password masked: for messages and logs."""
        return redacted(self.redis_url)

    def stored_id(self, customer_id: str) -> str:
        """The id a customer is stored under: their pseudonym with ``PULSE_PSEUDONYM_KEY``, else itself."""
        return pseudonym(self.pseudonym_key, customer_id) if self.pseudonym_key else customer_id

    def rocksdb_options(self) -> dict[str, int]:
        """Faust's RocksDB options of one table (a new dict each call: Faust's store keeps and
        changes the one it is given). Faust's own defaults (64 MiB memtables, three of them,
        and a 2 GiB block cache per table partition) let a worker's memory grow with every
        customer written until those caps; these bound it.

        >>> Settings().rocksdb_options()["write_buffer_size"]
        2097152
        """
        return {"write_buffer_size": self.rocksdb_write_buffer_mb << 20, "max_write_buffer_number": 2,
                "block_cache_size": self.rocksdb_block_cache_mb << 20}

    def dedup_policy(self) -> DedupPolicy:
        return DedupPolicy(lateness=timedelta(seconds=self.allowed_lateness_seconds),
                           horizon=timedelta(seconds=self.dedup_horizon_seconds),
                           max_ids=self.dedup_max_ids)

    def validation_rules(self) -> ValidationRules:
        return ValidationRules(max_bytes=self.max_event_bytes, total_tolerance=self.total_tolerance,
                               max_future=timedelta(seconds=self.max_future_seconds))

    def churn_config(self) -> ChurnConfig:
        return ChurnConfig(horizon_days=self.churn_horizon_days, threshold=self.churn_threshold,
                           inactivity_factor=self.inactivity_factor, cooldown_days=self.alert_cooldown_days,
                           holdout_share=self.holdout_share, warn_by=self.churn_warn_by)

    def api_token_list(self) -> list[str]:
        return [token for token in self.api_tokens.split(",") if token]

    def topic(self, name: str) -> str:
        """The full name of one of our topics, e.g. ``events`` -> ``pulse.events``."""
        return f"{self.topic_prefix}{name}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if not field and error["type"] in ("horizon", "sasl"):
            field = "dedup_horizon_seconds" if error["type"] == "horizon" else "kafka_security_protocol"
        info = Settings.model_fields.get(field)
        extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
        form = str(extra.get("form", ""))
        message = str(error["msg"]).removeprefix("Value error, ")
        got = "<hidden>" if extra.get("secret") else error.get("ctx", {}).get("value", error.get("input"))
        got = redacted(got) if field == "redis_url" and isinstance(got, str) else got
        lines.append(
            f"  {ENV_PREFIX}{field.upper()}={got!r}: {message}"
            + (f" (accepted form: {form})" if form else "")
        )
    return "\n".join(lines)
