"""The lookup API's answers (``pulse serve``, ``stream/api/``): what personalization services
and churn-warning triggers read. Every customer answer carries its freshness."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH_IDS = 1000


class CustomerLookup(BaseModel):
    """One customer's profile as stored in Redis, with how fresh it is.

    ``status`` is ``stale`` when the caller set ``max_age_seconds`` and the profile was computed
    longer ago than that: it is still returned, but never passes as fresh."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    status: Literal["fresh", "stale"]
    version: int = Field(description="The state revision: grows with every change of the profile.")
    event_version: int = Field(0, description="Events applied to the state; writes are ordered by "
                                              "(event_version, version).")
    as_of_event_time: datetime | None = Field(description="Event time of the customer's newest event counted.")
    computed_at: datetime = Field(description="When a worker computed this profile (wall clock, UTC).")
    staleness_seconds: float = Field(description="Seconds from computed_at to this answer.")
    profile: dict[str, str | int | float] = Field(
        description="The profile's fields (all, or those asked for); numbers as numbers.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH_IDS, description="Customer ids, at most 1,000.")
    fields: list[str] | None = Field(None, description="Profile fields to return (default: all).")
    max_age_seconds: float | None = Field(None, gt=0, description="Older profiles come back as stale.")


class BatchAnswer(BaseModel):
    customers: dict[str, CustomerLookup]
    missing: list[str] = Field(description="Ids with no profile (never seen, or erased).")


class SegmentPage(BaseModel):
    segment: str
    customers: list[str]
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next page; null on the last page.")


class AlertList(BaseModel):
    alerts: list[dict[str, str]] = Field(description="Newest first; the fields of the ``pulse:alerts`` stream.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: Literal["up", "down"]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
