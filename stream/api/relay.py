"""Alert delivery from the ``pulse:alerts`` stream: ``pulse alerts follow`` (a tail) and
``pulse alerts relay --webhook URL`` (at-least-once delivery to an HTTP endpoint).

The relay reads through a Redis consumer group of its own (``pulse-relay`` unless named), so
a restarted relay resumes where it stopped: an alert is acknowledged in the group only after
the endpoint answered 2xx, and the alerts a stopped relay had read but not delivered are
delivered first on restart. Each POST carries the alert as JSON and:

- ``X-Pulse-Alert-Id``: the alert id (a redelivery repeats it: receivers deduplicate by it);
- ``X-Pulse-Timestamp``: seconds since the epoch when this attempt was signed;
- ``X-Pulse-Signature``: ``sha256=`` + hex HMAC-SHA256 over ``"{timestamp}.{body}"`` with
  the shared secret (``PULSE_WEBHOOK_SECRET``), so a receiver can check origin and freshness.

Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff; after
``max_attempts`` (or at once for any other 4xx, which retrying cannot fix) the alert goes to
the dead-letter stream ``pulse:alerts:relay-dlq`` with the last error, and the relay moves on.

Alerts of held-out customers (``holdout: true``, the control group of ``PULSE_HOLDOUT_SHARE``)
are acknowledged without a POST: no intervention reaches them, so ``pulse uplift-report`` can
measure what the interventions add.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_origin

import httpx
import redis

from schemas import Alert
from stream.sinks.redis import KEY_PREFIX

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429}
_JSON_FIELDS = {name for name, info in Alert.model_fields.items()
                if get_origin(info.annotation) in (tuple, list, dict)}  # lists and objects: JSON in the stream
DLQ_MAXLEN = 100_000
REDIS_RETRY_SECONDS = 2.0


def alert_from_stream(fields: Mapping[str, str]) -> dict[str, Any]:
    """A ``pulse:alerts`` entry (flat strings) as the alert's JSON object.

    >>> alert_from_stream({"alert_id": "c:churn_risk:3", "customer_id": "c", "kind": "churn_risk",
    ...     "severity": "high", "score": "0.81", "threshold": "0.7", "reason": "silent",
    ...     "explanation": '[{"feature": "recency_ratio", "contribution": 1.2}]',
    ...     "event_time": "2024-03-01T00:00:00+00:00", "model_version": "heuristic-1",
    ...     "rules_version": "r1"})["score"]
    0.81
    """
    raw: dict[str, Any] = {}
    for name in Alert.model_fields:
        value = fields.get(name, "")
        if value != "":
            raw[name] = json.loads(value) if name in _JSON_FIELDS else value
    return Alert.model_validate(raw).model_dump(mode="json")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value; a receiver checks it like this (and rejects old timestamps):

    >>> body, stamp = b'{"alert_id":"a"}', 1700000000
    >>> header = sign("s3cret-0123456789", stamp, body)
    >>> mine = hmac.new(b"s3cret-0123456789", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    >>> hmac.compare_digest(header, f"sha256={mine}")
    True
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def describe(alert: Mapping[str, Any]) -> str:
    """One human-readable line per alert (``pulse alerts follow``)."""
    score = alert.get("score")
    shown = f" score {score:.2f}" if isinstance(score, float) else ""
    held = "  [held out]" if alert.get("holdout") else ""
    return (f"{alert['event_time']}  {alert['severity']:<6} {alert['kind']:<18} {alert['customer_id']}"
            f"{shown}  {alert['reason']}{held}")


@dataclass
class RelayStats:
    delivered: int = 0
    attempts: int = 0
    dead_lettered: int = 0
    held_out: int = 0  # alerts of the control group (PULSE_HOLDOUT_SHARE): acknowledged, not sent
    errors: dict[str, int] = field(default_factory=dict)


class Relay:
    """Delivers the alert stream to one webhook through a consumer group."""

    def __init__(self, client: redis.Redis, webhook: str, secret: str, *, group: str = "pulse-relay",
                 consumer: str = "relay-1", prefix: str = KEY_PREFIX, max_attempts: int = 8,
                 initial_backoff: float = 0.5, max_backoff: float = 30.0, timeout: float = 10.0,
                 http: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.webhook, self.secret = client, webhook, secret
        self.group, self.consumer = group, consumer
        self.stream, self.dlq = f"{prefix}alerts", f"{prefix}alerts:relay-dlq"
        self.max_attempts, self.initial_backoff, self.max_backoff = max_attempts, initial_backoff, max_backoff
        self.http = http or httpx.Client(timeout=timeout)
        self.sleep = sleep
        self.stats = RelayStats()
        self.stopping = False

    def ensure_group(self, from_start: bool) -> None:
        """Create the consumer group (at the stream's start, or its end) unless it exists."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0" if from_start else "$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self, from_start: bool = False, idle_exit: float | None = None) -> RelayStats:
        """Deliver until stopped (or, with ``idle_exit``, until nothing arrived for that long)."""
        self.ensure_group(from_start)
        pending_first = True  # what this consumer read before a restart and did not acknowledge
        idle_since = time.monotonic()
        while not self.stopping:
            start = "0" if pending_first else ">"
            try:
                entries: Any = self.client.xreadgroup(self.group, self.consumer, {self.stream: start}, count=100,
                                                      block=None if pending_first else 1000)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("relay: Redis unavailable (%s); retrying in %.0fs", exc, REDIS_RETRY_SECONDS)
                self.sleep(REDIS_RETRY_SECONDS)
                continue
            batch = entries[0][1] if entries else []
            if pending_first and not batch:
                pending_first = False
                continue
            for entry_id, fields in batch:
                if self.stopping:
                    break
                self.deliver(entry_id, fields)
            if batch:
                idle_since = time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                break
        return self.stats

    def deliver(self, entry_id: Any, fields: Mapping[Any, Any] | None) -> None:
        if fields is None:  # read before a restart, then trimmed from the capped stream: nothing to send
            log.warning("relay: %s was trimmed from the stream before delivery", _text(entry_id))
            self.client.xack(self.stream, self.group, entry_id)
            return
        decoded = {_text(k): _text(v) for k, v in fields.items()}
        try:
            alert = alert_from_stream(decoded)
        except ValueError as exc:
            self._dead_letter(entry_id, decoded, f"not an alert: {exc}", attempts=0)
            return
        if alert["holdout"]:  # the control group: recorded and measured, never acted on
            self.client.xack(self.stream, self.group, entry_id)
            self.stats.held_out += 1
            return
        body = json.dumps(alert, separators=(",", ":")).encode()
        backoff, error = self.initial_backoff, ""
        for attempt in range(1, self.max_attempts + 1):
            self.stats.attempts += 1
            retry, error = self._post(alert["alert_id"], body)
            if not error:
                self.client.xack(self.stream, self.group, entry_id)
                self.stats.delivered += 1
                return
            self.stats.errors[error.split(":")[0]] = self.stats.errors.get(error.split(":")[0], 0) + 1
            if not retry or attempt == self.max_attempts or self.stopping:
                break
            log.warning("relay: %s failed (%s), attempt %d, retrying in %.1fs", alert["alert_id"], error, attempt,
                        backoff)
            self.sleep(backoff)
            backoff = min(self.max_backoff, backoff * 2)
        if self.stopping and retry:
            return  # not acknowledged: delivered again after a restart
        self._dead_letter(entry_id, decoded, error, attempts=attempt)

    def _post(self, alert_id: str, body: bytes) -> tuple[bool, str]:
        """(retryable, error) of one attempt; no error means delivered."""
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "X-Pulse-Alert-Id": alert_id,
                   "X-Pulse-Timestamp": str(stamp), "X-Pulse-Signature": sign(self.secret, stamp, body)}
        try:
            answer = self.http.post(self.webhook, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return True, f"{type(exc).__name__}: {exc}"
        if 200 <= answer.status_code < 300:
            return False, ""
        retry = answer.status_code >= 500 or answer.status_code in RETRYABLE_STATUS
        return retry, f"HTTP {answer.status_code}: {answer.text[:200]}"

    def _dead_letter(self, entry_id: Any, fields: Mapping[str, str], error: str, attempts: int) -> None:
        log.error("relay: %s dead-lettered after %d attempts: %s", fields.get("alert_id"), attempts, error)
        pipe = self.client.pipeline(transaction=True)
        letter: dict[Any, Any] = {**fields, "relay_error": error[:2000], "relay_attempts": str(attempts),
                                  "relay_webhook": self.webhook, "relay_group": self.group}
        pipe.xadd(self.dlq, letter,
                  maxlen=DLQ_MAXLEN, approximate=True)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.execute()
        self.stats.dead_lettered += 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
