"""The single-customer lookup without the framework: ``GET /v1/customers/{customer_id}`` is the
route personalization services call on every page, and FastAPI's routing, dependency injection
and parameter validation cost more CPU than the Redis read behind it.

:class:`FastLookup` is a plain ASGI middleware in front of the FastAPI app. It answers only
authorized, well-formed GETs (at most ``fields`` and a positive ``max_age_seconds``, and
``If-None-Match``) with the same body and headers as the FastAPI route, including its 404 and
503 answers (built by the same functions), and passes every other request on untouched:
401, 422, unknown or repeated parameters, other routes and methods. The FastAPI route stays
the definition (and the OpenAPI document); a test holds the two answers equal.

``POST /v1/customers:batch`` likewise: a well-formed JSON body (ids as strings, fields as
strings, a positive number of seconds) is answered here from
:meth:`stream.api.lookup.AsyncLookupClient.get_many_json` (answers held since their hash was
last written, encoded once); any other body goes on to the route, which reads it again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import redis
from starlette.responses import Response

from schemas.api import MAX_BATCH_IDS, CustomerLookup
from stream.api.lookup import AsyncLookupClient, UnknownFields
from stream.api.tokens import bearer, token_matches

PREFIX = "/v1/customers/"
BATCH_PATH = "/v1/customers:batch"
MAX_ID_LENGTH = 200  # as the route's Path(max_length=200)
KNOWN_PARAMS = frozenset({"fields", "max_age_seconds"})
BATCH_KEYS = frozenset({"ids", "fields", "max_age_seconds"})
MAX_BATCH_BODY = 1 << 20  # a larger body goes on to the route

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def etag(found: CustomerLookup) -> str:
    """A profile's weak ETag, by what orders its writes: (event version, version). (The version
    alone can repeat: after a crash, the redo of a batch whose profiles had reached Redis
    reaches them again with lower revisions.)

    >>> from datetime import UTC, datetime
    >>> etag(CustomerLookup(customer_id="c", status="fresh", version=7, event_version=5, as_of_event_time=None,
    ...                     computed_at=datetime(2026, 1, 1, tzinfo=UTC), staleness_seconds=0.0, profile={}))
    'W/"5.7"'
    """
    return f'W/"{found.event_version}.{found.version}"'


def not_modified(if_none_match: str | None, tag: str) -> bool:
    return bool(if_none_match) and tag in (t.strip() for t in (if_none_match or "").split(","))


class FastLookup:
    """See the module docstring. ``route`` is the FastAPI route it stands in for (set on the
    scope, so that the request-time histogram labels both paths alike); ``missing`` and
    ``unavailable`` are the route's 404 and 503 answers."""

    def __init__(self, app: ASGIApp, client: AsyncLookupClient, tokens: Sequence[str], route: Any,
                 missing: Callable[[str], Response], unavailable: Callable[[Exception], Response],
                 batch_route: Any = None) -> None:
        self.app, self.client, self.tokens, self.route, self.batch_route = app, client, list(tokens), route, batch_route
        self.missing, self.unavailable = missing, unavailable
        self.answered = 0  # requests answered here (the others went on to the route)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == BATCH_PATH \
                and self.batch_route is not None:
            await self._batch(scope, receive, send)
            return
        request = self._request(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if request is None:
            await self.app(scope, receive, send)
            return
        customer_id, fields, max_age, if_none_match = request
        try:
            found = await self.client.get(customer_id, fields, max_age)
        except UnknownFields:  # the route answers 422 in its own words
            await self.app(scope, receive, send)
            return
        except redis.RedisError as exc:
            await self.unavailable(exc)(self._claim(scope, self.route), receive, send)  # type: ignore[arg-type]
            return
        self._claim(scope, self.route)
        if found is None:
            await self.missing(customer_id)(scope, receive, send)  # type: ignore[arg-type]
            return
        tag = etag(found)
        if not_modified(if_none_match, tag):
            await _answer(send, 304, b"", [(b"etag", tag.encode())])
            return
        await _answer(send, 200, found.model_dump_json().encode(),
                      [(b"etag", tag.encode()), (b"content-type", b"application/json")])

    async def _batch(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        body, complete = await _read_body(receive)
        request = self._batch_request(scope, body) if complete else None
        if request is None:  # the route reads the body again and answers in its own words
            await self.app(scope, _replaying(body, complete, receive), send)
            return
        ids, fields, max_age = request
        try:
            answer = await self.client.get_many_json(list(dict.fromkeys(ids)), fields, max_age)
        except UnknownFields:
            await self.app(scope, _replaying(body, complete, receive), send)
            return
        except redis.RedisError as exc:
            await self.unavailable(exc)(self._claim(scope, self.batch_route), receive, send)  # type: ignore[arg-type]
            return
        self._claim(scope, self.batch_route)
        await _answer(send, 200, answer, [(b"content-type", b"application/json")])

    def _claim(self, scope: dict[str, Any], route: Any) -> dict[str, Any]:
        """Answered here, as ``route`` (so that the request-time histogram labels both paths alike)."""
        scope["route"] = route
        self.answered += 1
        return scope

    def _batch_request(self, scope: dict[str, Any],
                       body: bytes) -> tuple[list[str], list[str] | None, float | None] | None:
        """(ids, fields, max age) of a batch this path answers, else None."""
        headers = _once(scope, (b"authorization", b"content-type"))
        if scope.get("query_string") or headers is None:
            return None
        authorization, content_type = headers
        if content_type is None or content_type.split(";")[0].strip().lower() != "application/json":
            return None
        if self.tokens and not token_matches(bearer(authorization), self.tokens):
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or not BATCH_KEYS.issuperset(data):
            return None
        ids, fields, max_age = data.get("ids"), data.get("fields"), data.get("max_age_seconds")
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_BATCH_IDS \
                or not all(type(cid) is str for cid in ids):
            return None
        if fields is not None and (not isinstance(fields, list) or not all(type(name) is str for name in fields)):
            return None
        seconds = None
        if max_age is not None and (isinstance(max_age, str) or (seconds := _seconds(max_age)) is None):
            return None
        return ids, fields, seconds

    def _request(self, scope: dict[str, Any]) -> tuple[str, list[str] | None, float | None, str | None] | None:
        """(customer id, fields, max age, If-None-Match) of a request this path answers, else None."""
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        customer_id = path[len(PREFIX):]
        if not customer_id or "/" in customer_id or len(customer_id) > MAX_ID_LENGTH:
            return None
        headers = _once(scope, (b"authorization", b"if-none-match"))
        if headers is None:
            return None
        authorization, if_none_match = headers
        if self.tokens and not token_matches(bearer(authorization), self.tokens):
            return None
        fields: list[str] | None = None
        max_age: float | None = None
        query = scope.get("query_string", b"")
        if query:
            params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            names = [name for name, _ in params]
            if len(set(names)) != len(names) or not KNOWN_PARAMS.issuperset(names):
                return None
            for name, value in params:
                if name == "fields":
                    fields = value.split(",")
                elif (max_age := _seconds(value)) is None:
                    return None
        return customer_id, fields, max_age, if_none_match


def _seconds(value: object) -> float | None:
    """``max_age_seconds`` as the route reads it, if positive and finite: the query string's
    ASCII text (``float()`` reads any script's digits, the route does not) or a JSON number
    (not a boolean); else None.

    >>> [_seconds(v) for v in ("60", "0.5", 5, "\u0661\u0660", "0", "inf", "nan", True, 10**400, None)]
    [60.0, 0.5, 5.0, None, None, None, None, None, None, None]
    """
    if isinstance(value, str) and not value.isascii() or type(value) not in (str, int, float):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return None
    return seconds if seconds > 0 and not math.isinf(seconds) else None


def _once(scope: dict[str, Any], names: tuple[bytes, bytes]) -> tuple[str | None, str | None] | None:
    """The values of two headers (None: absent), or None when either is repeated (the route's
    own reading then decides).

    >>> _once({"headers": [(b"authorization", b"Bearer t"), (b"accept", b"*/*")]}, (b"authorization", b"etag"))
    ('Bearer t', None)
    >>> _once({"headers": [(b"etag", b"1"), (b"etag", b"2")]}, (b"authorization", b"etag")) is None
    True
    """
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in names:
            if name in found:
                return None
            found[name] = value.decode("latin-1")
    return found.get(names[0]), found.get(names[1])


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body, up to ``MAX_BATCH_BODY`` (False: there is more, or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BATCH_BODY:
            return b"".join(chunks), False


def _replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """``receive`` for the route: what was read first, then the rest from the client."""
    replayed = False

    async def again() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return again


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    if status != 304:
        headers = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
