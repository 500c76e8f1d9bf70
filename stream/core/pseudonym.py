"""Pseudonymous customer keys: with ``PULSE_PSEUDONYM_KEY`` set, a customer id is replaced at
ingestion by a keyed hash of it, so tables, changelogs, derived topics and Redis never hold
the raw id; whoever holds the key (the API, ``pulse forget``, ``pulse access``) maps a raw id
to its pseudonym, and nobody can map back."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "p-"


def pseudonym(key: str, customer_id: str) -> str:
    """The customer's pseudonym under ``key``: ``p-`` and 32 hex digits of HMAC-SHA256.

    >>> pseudonym("a-secret-of-16-chars", "c42")
    'p-973eef5581d2e116f78f71eae01dd1ac'
    >>> pseudonym("a-secret-of-16-chars", "c42") == pseudonym("another-secret-0123", "c42")
    False
    """
    return PREFIX + hmac.new(key.encode(), customer_id.encode(), hashlib.sha256).hexdigest()[:32]
