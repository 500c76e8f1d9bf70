"""Input events on ``pulse.events``: a common envelope and a union discriminated on ``type``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_ID_LENGTH = 128
ID_REQUIRED = "id_required"  # the error type of an event that says neither whose nor which anonymous visitor

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)
]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=14, decimal_places=4)]


class Consent(BaseModel):
    """What the customer agreed to; absent means unknown, not granted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analytics: bool | None = None
    personalization: bool | None = None
    marketing: bool | None = None


class Envelope(BaseModel):
    """Fields every event carries. Before login a browsing event may carry ``anonymous_id`` (a
    device or cookie id) in place of ``customer_id`` (then ``customer_id`` is ``""``); an
    ``identify`` event carries both and links them (``stream/core/identity.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier
    customer_id: Identifier = ""  # "": anonymous (``anonymous_id`` says whose)
    anonymous_id: Identifier | None = None
    event_time: AwareDatetime
    channel: Literal["web", "app", "store", "email", "call_center", "other"] = "web"
    session_id: Identifier | None = None
    consent: Consent | None = None

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _someone(self) -> Envelope:
        if not self.customer_id and not self.anonymous_id:
            raise PydanticCustomError(ID_REQUIRED, "customer_id: field required (or anonymous_id, for browsing "
                                                 "before login)")
        return self

    @property
    def anonymous(self) -> bool:
        """Browsing before login: only ``anonymous_id`` says whose it is."""
        return not self.customer_id


class _Known(Envelope):
    """An event only a known customer has: ``customer_id`` is required."""

    @model_validator(mode="after")
    def _known(self) -> _Known:
        if not self.customer_id:
            raise PydanticCustomError(ID_REQUIRED, "customer_id: field required for {kind} events (anonymous_id "
                                                 "alone is for browsing before login)", {"kind": self.type})
        return self

    type: str


class PageView(Envelope):
    type: Literal["page_view"]
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None


class ProductView(Envelope):
    type: Literal["product_view"]
    sku: Identifier
    category: Identifier | None = None


class Search(Envelope):
    type: Literal["search"]
    query: Annotated[str, StringConstraints(max_length=512)]


class CartChange(Envelope):
    type: Literal["add_to_cart", "remove_from_cart"]
    sku: Identifier
    category: Identifier | None = None
    quantity: Annotated[int, Field(gt=0, le=10_000)] = 1
    unit_price: Money | None = None


class CheckoutStart(Envelope):
    type: Literal["checkout_start"]
    cart_value: Money | None = None


class WishlistAdd(Envelope):
    type: Literal["wishlist_add"]
    sku: Identifier
    category: Identifier | None = None


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Identifier
    category: Identifier | None = None
    quantity: Annotated[int, Field(gt=0, le=10_000)]
    unit_price: Money


class Purchase(_Known):
    type: Literal["purchase"]
    order_id: Identifier
    items: Annotated[tuple[LineItem, ...], Field(max_length=500)] = ()
    total: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    discount: Money = Decimal(0)


class Refund(_Known):
    type: Literal["refund"]
    order_id: Identifier
    amount: Money
    reason: Annotated[str, StringConstraints(max_length=256)] | None = None


class SupportContact(_Known):
    type: Literal["support_contact"]
    kind: Literal["complaint", "question", "praise", "other"]
    topic: Annotated[str, StringConstraints(max_length=256)] | None = None


class Identify(_Known):
    """A login or sign-up: links ``anonymous_id``'s activity to ``customer_id``."""

    type: Literal["identify"]
    anonymous_id: Identifier


Event = Annotated[
    PageView
    | ProductView
    | Search
    | CartChange
    | CheckoutStart
    | WishlistAdd
    | Purchase
    | Refund
    | SupportContact
    | Identify,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

CLICK_TYPES = frozenset(
    {"page_view", "product_view", "search", "add_to_cart", "remove_from_cart",
     "checkout_start", "wishlist_add"}
)


def parse_event(raw: bytes | str) -> Event:
    """Decode one JSON event; raises ``pydantic.ValidationError`` on a bad record.

    >>> e = parse_event(b'{"type": "purchase", "event_id": "e1", "customer_id": " c1 ",'
    ...                 b' "event_time": "2024-01-01T10:00:00+02:00", "order_id": "o1",'
    ...                 b' "total": 12.5}')
    >>> (e.customer_id, e.event_time.isoformat(), e.total)
    ('c1', '2024-01-01T08:00:00+00:00', Decimal('12.5'))
    """
    return EVENT_ADAPTER.validate_json(raw)
