"""A batch's output records: what the profile agent sends to Kafka for one partition's
:class:`~stream.core.work.Effects`, encoded here without any I/O, so that the agent
(``agents/profile.py``) and the processor benchmark (``tests/bench/bench_processor.py``)
encode exactly the same records.

In the order sent: tag changes and alerts to their public topics, the batch's Redis writes
(profiles, tag changes, alerts, erasures) to the outbox in the batch's own partition
(``stream/sinks/outbox.py``), churn labels to their single partition, alert outcomes,
dead letters, and forwarded events to the ``customer-events`` partition of the customer
who owns them (in the order made: an alias's merge before its later events).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas import CustomerState, Profile
from stream.core.owner import owner_partition
from stream.core.work import Effects
from stream.sinks.outbox import RedisWrites
from stream.sinks.redis import encode_alert, encode_profile, encode_tag_change


@dataclass(frozen=True)
class Output:
    """One record to send: ``topic`` is the topic's name without the prefix (``Settings.topic``
    adds it); ``partition`` None leaves it to the producer's partitioner (by key)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


def batch_outputs(effects: Effects, profile: Callable[[CustomerState], Profile], partition: int, partitions: int,
                  input_ms: int | None = None) -> list[Output]:
    """The output records of one partition's batch. ``profile`` projects a state for Redis;
    ``partitions`` is the customer-events partition count; ``input_ms`` the Kafka timestamp of
    the batch's oldest input record (stamped on the outbox records, for latency metrics).

    >>> from datetime import UTC, datetime
    >>> from schemas import TagChange
    >>> at = datetime(2026, 12, 1, tzinfo=UTC)
    >>> change = TagChange(change_id="c1:1:segment", customer_id="c1", tag="segment", old=None, new="New",
    ...                    reason="event", event_time=at, version=1, rules_version="r1")
    >>> effects = Effects(tag_changes=[change], dead_letters=[(b"k", b"{}")], forwards=[("c2", b"c2", b"{}")])
    >>> [(o.topic, o.key, o.partition) for o in batch_outputs(effects, lambda state: state, 3, 4)]
    [('tag-changes', b'c1', None), ('redis-outbox', None, 3), ('events.dlq', b'k', None), ('customer-events', b'c2', 1)]
    """
    outputs = [Output("tag-changes", change.customer_id.encode(), change.model_dump_json().encode())
               for change in effects.tag_changes]
    writes = RedisWrites(profiles=[encode_profile(profile(state)) for state in effects.profiles.values()],
                         tag_changes=[encode_tag_change(change) for change in effects.tag_changes],
                         erasures=[erasure.to_json() for erasure in effects.erasures], input_ms=input_ms)
    for alert in effects.alerts:
        alert_json = alert.model_dump_json()
        writes.alerts.append(encode_alert(alert, alert_json))
        outputs.append(Output("alerts", alert.customer_id.encode(), alert_json.encode()))
    outputs += [Output("redis-outbox", None, record, partition) for record in writes.to_records()]
    # one partition: the single trainer reads them in order
    outputs += [Output("churn-labels", label.customer_id.encode(), label.model_dump_json().encode(), 0)
                for label in effects.labels]
    outputs += [Output("alert-outcomes", outcome.customer_id.encode(), outcome.model_dump_json().encode())
                for outcome in effects.outcomes]
    outputs += [Output("events.dlq", key, letter) for key, letter in effects.dead_letters]
    outputs += [Output("customer-events", key, value, owner_partition(owner, partitions))
                for owner, key, value in effects.forwards]
    return outputs
