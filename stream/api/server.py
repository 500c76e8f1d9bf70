"""The HTTP lookup API of ``pulse serve`` (FastAPI; OpenAPI at ``/docs``), over Redis through
:class:`stream.api.lookup.AsyncLookupClient`.

Every ``/v1`` route but ``/v1/health`` needs ``Authorization: Bearer <token>`` with one of
the configured tokens (compared in constant time). Errors are JSON ``{"error": {"code",
"message"}}``: 401 without a valid token, 404 for an unknown customer or segment, 422 for bad
input, 503 with ``Retry-After`` when Redis does not answer within half a second.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import redis
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.api import AlertList, BatchAnswer, BatchRequest, CustomerLookup, ErrorBody, Health, SegmentPage
from stream.api.dashboard import summary
from stream.api.fast import FastLookup, etag, not_modified
from stream.api.lookup import AsyncLookupClient, UnknownFields
from stream.api.observer import Observer
from stream.api.tokens import token_matches
from stream.core.erasure import ErasureRequest, ErasureRequestError
from stream.infra.metrics import CONTENT_TYPE
from stream.io.produce import submit_erasure

RETRY_AFTER_SECONDS = 2
DASHBOARD_CACHE_SECONDS = 4.0
STATIC = FilePath(__file__).parent / "static"
BEARER = HTTPBearer(auto_error=False)  # module level: the routes' annotations are resolved in this module
AlertKind = Literal[  # schemas.Alert.kind (a unit test holds them equal)
    "churn_risk", "activity_drop", "inactivity", "segment_downgrade", "high_value_at_risk",
                    "complaint_spike", "suspicious_transaction"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _json(model: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), media_type="application/json", headers=headers)


def _no_profile(customer_id: str) -> JSONResponse:
    return _error(404, "not_found", f"no profile for customer {customer_id!r}")


def _redis_unavailable(exc: Exception) -> JSONResponse:
    return _error(503, "redis_unavailable", f"Redis did not answer: {exc.__class__.__name__}",
                  {"Retry-After": str(RETRY_AFTER_SECONDS)})


class _Timed:
    """Request time by method, route template and status (a plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` costs more per request than the lookup itself)."""

    def __init__(self, app: Callable[..., Awaitable[None]], histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(scope["method"], route, str(status[0])).observe(time.perf_counter() - started)


class _CacheMetrics(Collector):
    """The batch answers held (:class:`stream.api.lookup.AnswerCache`): answers served from it,
    answers read from Redis, and how many are held."""

    def __init__(self, client: AsyncLookupClient) -> None:
        self.client = client

    def collect(self) -> Iterator[Metric]:
        cache = self.client.cache
        yield CounterMetricFamily("pulse_api_batch_answers_held", "Batch answers served as held (their hash "
                                  "unchanged since it was read).", value=cache.hits)
        yield CounterMetricFamily("pulse_api_batch_answers_read", "Batch answers read from Redis (not held, or "
                                  "their hash written since).", value=cache.misses)
        yield GaugeMetricFamily("pulse_api_batch_answers_holding", "Batch answers held now.", value=len(cache))


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid bearer token."},
    422: {"model": ErrorBody, "description": "Bad input."},
    503: {"model": ErrorBody, "description": "Redis did not answer; retry after Retry-After seconds."},
}


def create_app(client: AsyncLookupClient, tokens: Sequence[str], segments: Sequence[str],
               observer: Observer | None = None,
               erase: Callable[[str], Awaitable[ErasureRequest]] | None = None, fast_path: bool = True) -> FastAPI:
    """The API over ``client``; ``tokens`` empty means no authentication (``pulse serve --no-auth``);
    ``observer`` follows Kafka for the dashboard's pipeline panels (None: those stay empty);
    ``erase`` sends an erasure request to the workers (None: ``DELETE`` answers 503);
    ``fast_path``: single-customer GETs are answered by :class:`stream.api.fast.FastLookup`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # what is loaded by now (modules, the app, the models' code) lives as long as the process:
        # kept out of the collector's full scans, which would otherwise stall requests for milliseconds
        gc.collect()
        gc.freeze()
        task = asyncio.create_task(observer.run()) if observer is not None else None
        yield
        if task is not None:
            task.cancel()
            # bounded: a Kafka client cancelled mid-handshake may never finish closing
            await asyncio.wait({task}, timeout=5)

    app = FastAPI(title="Customer Pulse lookup API", version="1", lifespan=lifespan,
                  description="Customer profiles, segments and churn alerts, each with its freshness.")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    registry = CollectorRegistry()
    latency = Histogram("pulse_api_request_seconds", "Lookup API request time, by route and status.",
                        ["method", "route", "status"], registry=registry,
                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
    segment_sizes = Gauge("pulse_segment_customers", "Customers in each segment (Redis set sizes).", ["segment"],
                          registry=registry)
    registry.register(_CacheMetrics(client))
    known_tokens = list(tokens)
    known_segments = set(segments)

    async def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if not known_tokens:
            return
        if not token_matches(credentials.credentials if credentials else "", known_tokens):
            raise ApiError(401, "unauthorized", "a valid bearer token is required: Authorization: Bearer <token>",
                           {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(422, "invalid_request", problems)

    @app.exception_handler(UnknownFields)
    async def unknown_fields(_: Request, exc: UnknownFields) -> JSONResponse:
        return _error(422, "unknown_field", str(exc))

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        return _redis_unavailable(exc)

    guarded = [Depends(authorized)]

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        try:
            for segment, size in (await client.segment_sizes(sorted(known_segments))).items():
                segment_sizes.labels(segment).set(size)
        except redis.RedisError:
            pass  # the sizes stay as last read; the health route says Redis is down
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def dashboard_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    cached: dict[str, Any] = {"at": -DASHBOARD_CACHE_SECONDS, "summary": None}

    @app.get("/v1/dashboard", dependencies=guarded, tags=["dashboard"], responses=ERRORS)
    async def dashboard() -> JSONResponse:
        """The dashboard's data: segments now and over event time, migration, churn risk, alerts, and
        (when pulse serve follows Kafka) throughput, lag, dead letters and monitoring records. The
        Redis part is computed at most every few seconds, however many dashboards are open."""
        if time.monotonic() - cached["at"] >= DASHBOARD_CACHE_SECONDS:
            cached["summary"], cached["at"] = await summary(client, sorted(known_segments)), time.monotonic()
        return JSONResponse({**cached["summary"], "pipeline": observer.snapshot() if observer is not None else None})

    @app.get("/v1/health", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
    async def health() -> Response:
        try:
            up = await client.ping()
        except redis.RedisError:
            up = False
        body = Health(status="ok" if up else "unavailable", redis="up" if up else "down")
        return _json(body) if up else JSONResponse(body.model_dump(), status_code=503,
                                                   headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.get("/v1/customers/{customer_id}", response_model=CustomerLookup, dependencies=guarded, tags=["customers"],
             responses={**ERRORS, 304: {"description": "Not modified (If-None-Match)."},
                        404: {"model": ErrorBody, "description": "No profile for this customer."}})
    async def customer(customer_id: Annotated[str, Path(min_length=1, max_length=200)],
                       fields: Annotated[str | None, Query(description="Comma-separated profile fields.")] = None,
                       max_age_seconds: Annotated[float | None, Query(gt=0)] = None,
                       if_none_match: Annotated[str | None, Header()] = None) -> Response:
        found = await client.get(customer_id, fields.split(",") if fields is not None else None, max_age_seconds)
        if found is None:
            return _no_profile(customer_id)
        tag = etag(found)
        if not_modified(if_none_match, tag):
            return Response(status_code=304, headers={"ETag": tag})
        return _json(found, {"ETag": tag})

    @app.post("/v1/customers:batch", response_model=BatchAnswer, dependencies=guarded, tags=["customers"],
              responses=ERRORS)
    async def customers(request: BatchRequest) -> Response:
        found = await client.get_many(list(dict.fromkeys(request.ids)), request.fields, request.max_age_seconds)
        return _json(BatchAnswer(customers={cid: lookup for cid, lookup in found.items() if lookup is not None},
                                 missing=[cid for cid, lookup in found.items() if lookup is None]))

    @app.get("/v1/segments/{segment}/customers", response_model=SegmentPage, dependencies=guarded,
             tags=["segments"], responses={**ERRORS, 404: {"model": ErrorBody, "description": "Unknown segment."}})
    async def segment_customers(segment: str, cursor: Annotated[str, Query(pattern=r"^\d{1,20}$")] = "0",
                                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        if segment not in known_segments:
            raise ApiError(404, "unknown_segment",
                           f"no segment {segment!r} in the rules; known: {', '.join(sorted(known_segments))}")
        return _json(await client.segment_page(segment, cursor, limit))

    @app.get("/v1/alerts", response_model=AlertList, dependencies=guarded, tags=["alerts"], responses=ERRORS)
    async def alerts(kind: AlertKind | None = None,
                     since: Annotated[datetime | None, Query(description="Alerts raised at or after (ISO 8601).")]
                     = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        if since is not None and since.tzinfo is None:
            raise ApiError(422, "invalid_request", "since: give a time zone, e.g. 2026-12-01T10:00:00Z")
        return _json(AlertList(alerts=await client.recent_alerts(kind, since, limit)))

    @app.get("/v1/affinity", dependencies=guarded, tags=["customers"],
             responses={**ERRORS, 404: {"model": ErrorBody, "description": "No rules published yet."}})
    async def affinity(limit: Annotated[int, Query(ge=1, le=200)] = 20,
                       antecedent: Annotated[str | None, Query(alias="if", max_length=200,
                                                               description="Only rules from this category.")] = None
                       ) -> JSONResponse:
        """The population's cross-sell rules (a purchase of A followed by one of B within 30 days),
        strongest lift first, as the workers last published them (docs/api.md#cross-sell-affinity)."""
        document = await client.affinity()
        if document is None:
            raise ApiError(404, "not_found", "no cross-sell rules yet: workers with population scoring publish them "
                                             "every PULSE_PURCHASE_FIT_SECONDS once purchases arrive")
        rules = [r for r in document.get("rules", []) if antecedent is None or r.get("if") == antecedent]
        return JSONResponse({**document, "rules": rules[:limit]})

    @app.get("/v1/clusters", dependencies=guarded, tags=["customers"],
             responses={**ERRORS, 404: {"model": ErrorBody, "description": "No clusters published yet."}})
    async def clusters() -> JSONResponse:
        """The behavioural clusters (k-means over the customers' behaviour): each cluster's id, size
        in the sample, centroid and description, as the workers last published them
        (docs/api.md#behavioural-clusters). A customer's own is the hash's `cluster` field."""
        document = await client.clusters()
        if document is None:
            raise ApiError(404, "not_found", "no clusters yet: workers with population scoring publish them every "
                                             "PULSE_PURCHASE_FIT_SECONDS once customers have three sessions")
        return JSONResponse(document)

    @app.delete("/v1/customers/{customer_id}", status_code=202, dependencies=guarded, tags=["privacy"],
                responses={**ERRORS, 202: {"description": "Erasure requested; its receipt will be at Location."}})
    async def erase_customer(customer_id: Annotated[str, Path(min_length=1, max_length=200)]) -> JSONResponse:
        """A data-subject erasure, as `pulse forget`: the worker owning the customer erases them
        from its tables, changelogs and Redis, and suppresses their later events."""
        if erase is None:
            raise ApiError(503, "unavailable", "erasure needs Kafka: this server runs with --no-kafka")
        try:
            request = await erase(customer_id)
        except ErasureRequestError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        where = f"/v1/privacy/receipts/{request.request_id}"
        return JSONResponse({"request_id": request.request_id, "status": "accepted", "receipt": where},
                            status_code=202, headers={"Location": where})

    @app.get("/v1/privacy/receipts/{request_id}", dependencies=guarded, tags=["privacy"],
             responses={**ERRORS, 404: {"model": ErrorBody, "description": "No receipt (yet)."}})
    async def erasure_receipt(request_id: Annotated[str, Path(min_length=1, max_length=200)]) -> JSONResponse:
        """The receipt of an erasure: every store with the time it was cleared (404 until done)."""
        found = await client.receipt(request_id)
        if found is None:
            raise ApiError(404, "not_found", f"no receipt for {request_id!r} yet: is a worker running?")
        return JSONResponse(found)

    if fast_path:  # inside the timing: the last added wraps the others
        app.add_middleware(FastLookup, client=client, tokens=known_tokens,  # type: ignore[arg-type]
                           route=next(r for r in app.routes if getattr(r, "name", "") == "customer"),
                           batch_route=next(r for r in app.routes if getattr(r, "name", "") == "customers"),
                           missing=_no_profile, unavailable=_redis_unavailable)
    app.add_middleware(_Timed, histogram=latency)  # type: ignore[arg-type]  # a plain ASGI middleware
    return app


def from_environment() -> FastAPI:
    """The app of ``pulse serve`` (each server process builds its own from ``PULSE_*``)."""
    import os

    from stream.core.rules import load_rules
    from stream.settings import load_settings

    settings = load_settings()
    rules = load_rules(settings.rules_file)
    with_kafka = os.environ.get("PULSE_SERVE_KAFKA", "1") == "1"
    return create_app(AsyncLookupClient.from_url(settings.redis_url, stored_id=settings.stored_id,
                                                 cache_entries=settings.api_cache_entries),
                      settings.api_token_list(),
                      [rule.name for rule in rules.segments], observer=Observer(settings) if with_kafka else None,
                      erase=partial(submit_erasure, settings) if with_kafka else None)
