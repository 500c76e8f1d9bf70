"""Records on ``pulse.events.dlq``: the original input, why it was rejected, where and when."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DeadLetter(BaseModel):
    """A rejected input. ``original_b64`` holds the original bytes (base64), truncated to
    ``max_stored_bytes`` so the record always fits Kafka's message size; ``truncated`` says so."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    message: str
    stage: str
    failed_at: datetime
    original_key_b64: str | None
    original_b64: str
    original_size: int
    truncated: bool
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
