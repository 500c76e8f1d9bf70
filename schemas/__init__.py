"""The contract: pydantic v2 models of events, customer state and what we publish."""

from schemas.events import (
    CLICK_TYPES,
    EVENT_ADAPTER,
    Consent,
    Envelope,
    Event,
    LineItem,
    Purchase,
    Refund,
    SupportContact,
    parse_event,
)
from schemas.outputs import Alert, AlertOutcome, ChurnLabel, Contribution, CustomerTags, TagChange
from schemas.state import CustomerState, Identity, Profile

__all__ = [
    "CLICK_TYPES",
    "Alert",
    "AlertOutcome",
    "ChurnLabel",
    "Contribution",
    "EVENT_ADAPTER",
    "Consent",
    "CustomerState",
    "CustomerTags",
    "Envelope",
    "Event",
    "Identity",
    "LineItem",
    "Profile",
    "Purchase",
    "Refund",
    "SupportContact",
    "TagChange",
    "parse_event",
]
