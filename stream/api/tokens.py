"""Bearer tokens (``PULSE_API_TOKENS``) as the lookup API and the worker's customer view check them."""

from __future__ import annotations

import hmac
from collections.abc import Sequence


def token_matches(given: str, tokens: Sequence[str]) -> bool:
    """Whether ``given`` is one of ``tokens``; every token is compared, each in constant time.

    >>> token_matches("t-0123456789abcdef", ["other-0123456789ab", "t-0123456789abcdef"]), token_matches("", ["x"])
    (True, False)
    """
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given.encode(), token.encode())
    return matched and bool(given)


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ("" if none).

    >>> bearer("Bearer abc"), bearer("Basic abc"), bearer(None)
    ('abc', '', '')
    """
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
