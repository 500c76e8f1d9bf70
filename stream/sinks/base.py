"""The sink contract: versioned, idempotent writes of customer profiles, retried while down."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel

from schemas import Alert, CustomerTags, Profile, TagChange
from stream.core.churn import ChurnConfig, Scorer, alert_threshold, risk_band
from stream.core.churn_now import score_later
from stream.core.fold import purchase_fields
from stream.core.purchase_outlook import PurchaseModel

log = logging.getLogger(__name__)


class ProfileSink(Protocol):
    async def write_profiles(self, profiles: Sequence[Profile]) -> int:
        """Write each profile unless a same-or-newer version is stored; return how many were written."""
        ...

    async def write_tag_changes(self, changes: Sequence[TagChange]) -> int:
        """Append each change once (by ``change_id``) to the tag stream; return how many were new."""
        ...

    async def write_alerts(self, alerts: Sequence[Alert]) -> int:
        """Append each alert once (by ``alert_id``) to the alert stream; return how many were new."""
        ...

    async def read_profile(self, customer_id: str) -> dict[str, str] | None: ...

    async def segment_members(self, segment: str) -> set[str]: ...

    async def tag_changes(self) -> list[dict[str, str]]: ...

    async def alerts(self) -> list[dict[str, str]]: ...


# Hash fields a newer profile can take away (an unlink can leave a customer without aliases): a write
# deletes them when absent, where the other absent fields are only left out.
CLEARABLE_FIELDS = ("aliases",)


def cleared_fields(profile: Profile) -> list[str]:
    """The clearable fields this profile has no value for.

    >>> from datetime import datetime, UTC
    >>> cleared_fields(Profile(customer_id="c", version=3, events=3, orders=2, monetary="10.00",
    ...                        first_purchase_at=None, last_purchase_at=None, as_of_event_time=None,
    ...                        computed_at=datetime(2024, 1, 1, tzinfo=UTC), rules_version="r", model_version="m"))
    ['aliases']
    """
    return [name for name in CLEARABLE_FIELDS if getattr(profile, name) is None]


def profile_fields(profile: Profile) -> dict[str, str]:
    """The flat string fields of the ``pulse:cust:{id}`` hash (absent values are omitted).

    >>> from datetime import datetime, UTC
    >>> p = Profile(customer_id="c", version=3, events=3, orders=2, monetary="10.00",
    ...             first_purchase_at=None, last_purchase_at=None, as_of_event_time=None,
    ...             computed_at=datetime(2024, 1, 1, tzinfo=UTC), rules_version="r",
    ...             model_version="m")
    >>> profile_fields(p)["computed_at"], "first_purchase_at" in profile_fields(p)
    ('2024-01-01T00:00:00+00:00', False)
    """
    fields: dict[str, str] = {}
    for name, value in profile.model_dump().items():
        if value is None:
            continue
        fields[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return fields


def stream_fields(record: BaseModel) -> dict[str, str]:
    """The flat string fields of a Redis stream entry (tag change or alert): lists and objects
    as JSON, absent values as ``""``.

    >>> from datetime import datetime, UTC
    >>> stream_fields(TagChange(change_id="c:rfm:3", customer_id="c", tag="rfm", old=None, new="555", reason="r",
    ...                         event_time=datetime(2024, 1, 1, tzinfo=UTC), version=3, rules_version="v"))["old"]
    ''
    """
    return {name: json.dumps(value) if isinstance(value, list | dict) else "" if value is None else str(value)
            for name, value in record.model_dump(mode="json").items()}


TAG_RANK = {tag: rank for rank, tag in enumerate(CustomerTags().tag_values())}  # the order tag_changes emits


def tag_order(change: TagChange) -> int:
    """Where a change stands among its customer's changes: by state version, then tag (the tag
    stream's once-guard in both sinks).

    >>> from datetime import datetime, UTC
    >>> c = TagChange(change_id="c:rfm:3", customer_id="c", tag="rfm", old=None, new="555", reason="r",
    ...               event_time=datetime(2024, 1, 1, tzinfo=UTC), version=3, rules_version="v")
    >>> tag_order(c) > tag_order(c.model_copy(update={"tag": "segment"})), tag_order(c) < 4 * 16
    (True, True)
    """
    return change.version * 16 + TAG_RANK[change.tag]


def _number_kind(annotation: object) -> type | None:
    for kind in (int, float):
        if annotation in (kind, kind | None):
            return kind
    return None


_NUMBERS = {name: kind for name, info in Profile.model_fields.items()
            if (kind := _number_kind(info.annotation)) is not None}


def typed_fields(fields: Mapping[str, str]) -> dict[str, object]:
    """A ``pulse:cust`` hash with the :class:`Profile` model's numeric fields as numbers (what
    ``pulse export`` writes); the other fields stay the hash's strings.

    >>> typed_fields({"orders": "3", "churn_probability": "0.25", "monetary": "9.90", "segment": "Loyal"})
    {'orders': 3, 'churn_probability': 0.25, 'monetary': '9.90', 'segment': 'Loyal'}
    """
    return {name: _NUMBERS[name](value) if name in _NUMBERS and value != "" else value
            for name, value in fields.items()}


@dataclass(frozen=True)
class ReadModels:
    """What readers score as of now with: the published purchase model (and the horizon of its
    outlooks), and the churn scorer the workers use now with its settings (``churn_config``
    None: no worker has published one, so stored churn scores are not recomputed; ``churn``
    None: the heuristic)."""

    purchase: PurchaseModel | None = None
    horizon_days: int = 90
    churn: Scorer | None = None
    churn_config: ChurnConfig | None = None


def as_of_now(fields: Mapping[str, str], models: ReadModels) -> dict[str, str]:
    """A ``pulse:cust`` hash with its purchase-model fields and churn score recomputed as of the
    purchase model's now (the population's newest purchase day), so a silent customer's churn
    probability has risen since the hash was written; unchanged without a model or a purchase.

    >>> as_of_now({"orders": "0"}, ReadModels())
    {'orders': '0'}
    """
    model = models.purchase
    if model is None or not fields.get("orders") or not fields.get("first_purchase_at"):
        return dict(fields)
    as_of = fields.get("as_of_event_time")
    computed = purchase_fields(int(fields["orders"]), int(fields.get("purchase_days") or 0),
                               datetime.fromisoformat(fields["first_purchase_at"]),
                               datetime.fromisoformat(fields["last_purchase_at"]), float(fields.get("monetary") or 0),
                               datetime.fromisoformat(as_of) if as_of else None, model, models.horizon_days,
                               fields.get("value_tier"))
    config, scored_at = models.churn_config, fields.get("churn_as_of")
    if config is not None and scored_at and fields.get("churn_inputs") and computed:
        at, now = datetime.fromisoformat(scored_at), computed["scores_as_of"]
        if now > at:
            score = score_later(json.loads(fields["churn_inputs"]), (now - at).total_seconds() / 86_400, config,
                                models.churn)
            limit = alert_threshold(config, models.churn)
            computed |= {"churn_probability": round(score.probability, 4), "churn_as_of": now,
                         "churn_risk": risk_band(score.probability, limit), "churn_reasons": score.reasons(),
                         "model_version": score.model_version}
    return {**fields, **{name: value.isoformat() if isinstance(value, datetime) else str(value)
                         for name, value in computed.items() if value is not None}}


async def write_with_retry(
    write: Callable[[], Awaitable[int]],
    *,
    retry_on: tuple[type[BaseException], ...],
    initial_backoff: float = 0.1,
    max_backoff: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[], None] | None = None,
) -> int:
    """Call ``write`` until it succeeds, backing off exponentially on ``retry_on`` errors.

    The caller does not acknowledge its input until this returns, so an outage delays
    the projection but loses nothing.
    """
    backoff = initial_backoff
    attempt = 0
    while True:
        try:
            return await write()
        except retry_on as exc:
            attempt += 1
            if on_retry is not None:
                on_retry()
            log.warning("sink write failed (attempt %d, retrying in %.1fs): %s", attempt, backoff, exc)
            await sleep(backoff)
            backoff = min(max_backoff, backoff * 2)
