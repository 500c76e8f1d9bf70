"""The lookup API and the direct client against a real Redis: profiles written by the real
sink, answers with their freshness, auth, 404/422/503, ETag, segment pages and alerts."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from schemas import Alert, Contribution
from stream.api.fast import FastLookup
from stream.api.lookup import AsyncLookupClient, LookupClient
from stream.api.server import create_app
from stream.sinks import RedisSink
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, free_port, wait_for
from tests.sink_contract import make_profile

pytestmark = pytest.mark.integration

TOKEN = "test-token-0123456789"
SEGMENTS = ["Champions", "Loyal", "At Risk"]
NOW = datetime(2024, 2, 1, 0, 5, tzinfo=UTC)  # five minutes after make_profile's computed_at
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def sink(test_redis: str) -> AsyncIterator[RedisSink]:
    sink = RedisSink.from_url(test_redis)
    yield sink
    await sink.close()


def _api(url: str, tokens: list[str] | None = None) -> httpx.AsyncClient:
    client = AsyncLookupClient.from_url(url, clock=lambda: NOW)
    app = create_app(client, [TOKEN] if tokens is None else tokens, SEGMENTS)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pulse")


@pytest.fixture
async def api(test_redis: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _api(test_redis) as client:
        yield client


async def test_every_lookup_route_needs_a_valid_token_and_health_and_docs_do_not(api: httpx.AsyncClient) -> None:
    routes = [("GET", "/v1/customers/c1"), ("POST", "/v1/customers:batch"), ("GET", "/v1/segments/Loyal/customers"),
              ("GET", "/v1/alerts")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
            answer = await api.request(method, path, headers=headers, json={"ids": ["c1"]})
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json()["error"]["code"] == "unauthorized"
            assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert (await api.get("/v1/health")).json() == {"status": "ok", "redis": "up"}
    assert (await api.get("/docs")).status_code == 200
    assert "/v1/customers/{customer_id}" in (await api.get("/openapi.json")).json()["paths"]


async def test_a_profile_comes_with_its_freshness_and_a_field_subset(api: httpx.AsyncClient, sink: RedisSink) -> None:
    await sink.write_profiles([make_profile("c1", version=3, orders=2, monetary="19.90", segment="Loyal")])
    answer = await api.get("/v1/customers/c1", headers=AUTH)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["customer_id"], body["status"], body["version"]) == ("c1", "fresh", 3)
    assert body["computed_at"] == "2024-02-01T00:00:00Z" and body["as_of_event_time"] == "2024-01-03T00:00:00Z"
    assert body["staleness_seconds"] == 300.0
    assert body["profile"]["orders"] == 2 and body["profile"]["monetary"] == "19.90"
    assert body["profile"]["segment"] == "Loyal" and "written_at" not in body["profile"]

    subset = (await api.get("/v1/customers/c1", params={"fields": "segment,orders"}, headers=AUTH)).json()
    assert subset["profile"] == {"segment": "Loyal", "orders": 2} and subset["version"] == 3

    stale = (await api.get("/v1/customers/c1", params={"max_age_seconds": 60}, headers=AUTH)).json()
    assert stale["status"] == "stale" and stale["profile"]["orders"] == 2
    fresh = (await api.get("/v1/customers/c1", params={"max_age_seconds": 600}, headers=AUTH)).json()
    assert fresh["status"] == "fresh"


async def test_etag_round_trip_follows_the_version(api: httpx.AsyncClient, sink: RedisSink) -> None:
    await sink.write_profiles([make_profile("c1", version=3, orders=2)])
    first = await api.get("/v1/customers/c1", headers=AUTH)
    etag = first.headers["ETag"]
    assert etag == 'W/"3.3"'
    unchanged = await api.get("/v1/customers/c1", headers={**AUTH, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == etag and not unchanged.content
    await sink.write_profiles([make_profile("c1", version=4, orders=3)])
    changed = await api.get("/v1/customers/c1", headers={**AUTH, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] == 'W/"4.4"'
    assert changed.json()["profile"]["orders"] == 3
    # after a crash, a redo with more events applied can come back at a lower revision: never "unchanged"
    await sink.write_profiles([make_profile("c1", version=3, orders=4, event_version=5)])
    redone = await api.get("/v1/customers/c1", headers={**AUTH, "If-None-Match": etag})
    assert redone.status_code == 200 and redone.headers["ETag"] == 'W/"5.3"'
    assert redone.json()["profile"]["orders"] == 4 and redone.json()["event_version"] == 5


async def test_unknown_customer_and_bad_input_get_json_errors(api: httpx.AsyncClient, sink: RedisSink) -> None:
    missing = await api.get("/v1/customers/nobody", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == {
        "code": "not_found", "message": "no profile for customer 'nobody'"}
    bad_field = await api.get("/v1/customers/c1", params={"fields": "segmnet"}, headers=AUTH)
    assert bad_field.status_code == 422 and "segmnet" in bad_field.json()["error"]["message"]
    assert "churn_probability" in bad_field.json()["error"]["message"]  # the accepted fields are listed
    for params in ({"max_age_seconds": "-1"}, {"max_age_seconds": "soon"}):
        answer = await api.get("/v1/customers/c1", params=params, headers=AUTH)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"
    too_many = await api.post("/v1/customers:batch", json={"ids": [f"c{i}" for i in range(1001)]}, headers=AUTH)
    assert too_many.status_code == 422 and "ids" in too_many.json()["error"]["message"]
    for body in ({}, {"ids": []}, {"ids": ["c1"], "extra": 1}):
        assert (await api.post("/v1/customers:batch", json=body, headers=AUTH)).status_code == 422
    assert (await api.get("/v1/alerts", params={"kind": "nonsense"}, headers=AUTH)).status_code == 422
    assert (await api.get("/v1/alerts", params={"since": "2024-01-01T00:00:00"}, headers=AUTH)).status_code == 422
    unknown = await api.get("/v1/segments/Nobodies/customers", headers=AUTH)
    assert unknown.status_code == 404 and "Loyal" in unknown.json()["error"]["message"]


@asynccontextmanager
async def _fast_and_route(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, FastLookup]]:
    """Clients of two apps over ``url``, with the fast path (``stream/api/fast.py``) and without,
    and the fast path itself (its count of requests answered)."""
    built = create_app(AsyncLookupClient.from_url(url, clock=lambda: NOW), [TOKEN], SEGMENTS)
    route_only = create_app(AsyncLookupClient.from_url(url, clock=lambda: NOW), [TOKEN], SEGMENTS, fast_path=False)

    def client(app: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pulse")  # type: ignore[arg-type]

    async with client(built) as fast, client(route_only) as slow:
        await fast.get("/v1/health")  # the middleware stack is built on the first request
        node, fast_path = built.middleware_stack, None
        while node is not None and fast_path is None:
            fast_path = node if isinstance(node, FastLookup) else None
            node = getattr(node, "app", None)
        assert fast_path is not None
        yield fast, slow, fast_path


async def test_the_fast_path_answers_single_lookups_exactly_as_the_route(test_redis: str, sink: RedisSink) -> None:
    """`stream/api/fast.py` answers the well-formed GETs itself and passes the rest to the route:
    every answer (status, body, headers) equals the route's, and the route saw only the rest."""
    await sink.write_profiles([make_profile("c1", version=3, orders=2, monetary="19.90", segment="Loyal"),
                               make_profile("a b/é", version=5, orders=1)])
    Headers = dict[str, str] | list[tuple[str, str]]
    requests: list[tuple[str, Headers, bool]] = [
                ("/v1/customers/c1", {}, True), ("/v1/customers/c1?fields=segment,orders", {}, True),
                ("/v1/customers/c1?max_age_seconds=60", {}, True), ("/v1/customers/c1?max_age_seconds=600", {}, True),
                ("/v1/customers/c1", {"If-None-Match": 'W/"3.3"'}, True),
                ("/v1/customers/c1", {"If-None-Match": 'W/"2.2", W/"3.3"'}, True),
                ("/v1/customers/a%20b%2F%C3%A9", {}, False),  # an encoded slash: the route's own path rules
                ("/v1/customers/nobody", {}, True), ("/v1/customers/c1?fields=segmnet", {}, False),
                ("/v1/customers/c1?max_age_seconds=0", {}, False), ("/v1/customers/c1?max_age_seconds=soon", {}, False),
                ("/v1/customers/c1?fields=orders&fields=segment", {}, False), ("/v1/customers/c1?other=1", {}, False),
                ("/v1/customers/" + "x" * 201, {}, False),
                ("/v1/customers/c1?max_age_seconds=%D9%A1%D9%A0", {}, False),  # Arabic-Indic digits: 422
                ("/v1/customers/c1", [("If-None-Match", 'W/"1.1"'), ("If-None-Match", 'W/"3.3"')], False),
                ("/v1/customers/c1", [("Authorization", "Bearer wrong-token-0123456789"),
                                      ("Authorization", f"Bearer {TOKEN}")], False)]
    async with _fast_and_route(test_redis) as (fast, slow, fast_path):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, AUTH):
            for path, extra, answered_fast in requests:
                before = fast_path.answered
                sent = [*headers.items(), *(extra.items() if isinstance(extra, dict) else extra)]
                got = await fast.get(path, headers=sent)
                want = await slow.get(path, headers=sent)
                assert (got.status_code, got.content) == (want.status_code, want.content), (path, headers, extra)
                for name in ("content-type", "content-length", "etag", "retry-after", "www-authenticate"):
                    assert got.headers.get(name) == want.headers.get(name), (path, name)
                assert (fast_path.answered > before) == (answered_fast and headers is AUTH), (path, headers)
        assert (await fast.get("/v1/customers/c1", headers=AUTH)).json()["profile"]["segment"] == "Loyal"


async def test_the_fast_path_answers_batches_exactly_as_the_route(test_redis: str, sink: RedisSink) -> None:
    """Well-formed batches are answered by `stream/api/fast.py` from the answers it holds; every
    answer (status, body, headers) equals the route's, first read and held alike, and any other
    body goes on to the route, which reads it again."""
    await sink.write_profiles([make_profile("c1", version=3, orders=2, monetary="19.90", segment="Loyal"),
                               make_profile('é "q"', version=5, orders=1), make_profile("c3", version=2, orders=7)])
    json_type = {"Content-Type": "application/json"}
    bodies: list[tuple[bytes, dict[str, str], bool]] = [
        (b'{"ids": ["c1", "c3", "nobody", "c1"]}', json_type, True),
        ('{"ids": ["é \\"q\\"", "c1"], "fields": ["segment", "orders"]}'.encode(), json_type, True),
        (b'{"ids": ["c1"], "max_age_seconds": 60}', json_type, True),
        (b'{"ids": ["c1", "c3"], "max_age_seconds": 600.5, "fields": []}', json_type, True),
        (b'{"ids": ["c1"]}', {"Content-Type": "application/json; charset=utf-8"}, True),
        (b'{"ids": ["c1"], "fields": ["segmnet"]}', json_type, False),  # the route's 422
        (b'{"ids": []}', json_type, False), (b'{"ids": [1]}', json_type, False),
        (b'{"ids": ["c1"], "max_age_seconds": 0}', json_type, False),
        (b'{"ids": ["c1"], "max_age_seconds": "60"}', json_type, False),  # the route reads a numeric string
        (b'{"ids": ["c1"], "max_age_seconds": true}', json_type, False),
        (b'{"ids": ["c1"], "max_age_seconds": 1e999}', json_type, False),
        (b'{"ids": ["c1"], "other": 1}', json_type, False), (b'["c1"]', json_type, False),
        (b'{"ids": ["c1"', json_type, False), (b'{"ids": ["c1"]}', {"Content-Type": "text/plain"}, False),
        (json.dumps({"ids": [f"c{i}" for i in range(1001)]}).encode(), json_type, False)]
    async with _fast_and_route(test_redis) as (fast, slow, fast_path):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, AUTH):
            for _ in range(2):  # read, then held
                for body, extra, answered_fast in bodies:
                    before = fast_path.answered
                    got = await fast.post("/v1/customers:batch", content=body, headers={**headers, **extra})
                    want = await slow.post("/v1/customers:batch", content=body, headers={**headers, **extra})
                    assert (got.status_code, got.content) == (want.status_code, want.content), (body, headers)
                    for name in ("content-type", "content-length", "retry-after", "www-authenticate"):
                        assert got.headers.get(name) == want.headers.get(name), (body, name)
                    assert (fast_path.answered > before) == (answered_fast and headers is AUTH), (body, headers)
        answer = (await fast.post("/v1/customers:batch", json={"ids": ["c1", "x"]}, headers=AUTH)).json()
        assert answer["customers"]["c1"]["profile"]["segment"] == "Loyal" and answer["missing"] == ["x"]


async def test_held_batch_answers_follow_every_write_erasure_and_model(test_redis: str, sink: RedisSink) -> None:
    """A batch holds the answers it read and Redis returns only hashes written since: a newer
    profile, an erased one, one erased and written again at the same versions, and a newly
    published model are each seen at the next batch."""

    from stream.core.purchase import BgNbd, GammaGamma
    from stream.core.purchase_outlook import PurchaseModel
    from stream.sinks.redis import PURCHASE_MODEL_KEY, customer_key

    await sink.write_profiles([make_profile(f"h{i}", version=3, orders=3, monetary="60.00") for i in range(4)])
    client = AsyncLookupClient.from_url(test_redis, clock=lambda: NOW, models_ttl=0, cache_entries=3)
    store = aioredis.Redis.from_url(test_redis)
    ids = ["h0", "h1", "h2"]

    async def publish(as_of_day: int) -> None:
        model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44), as_of_day, 900, 300)
        await store.set(PURCHASE_MODEL_KEY, json.dumps({**model.to_json(), "horizon_days": 90}))

    try:
        await publish(19_730)
        first = await client.get_many(ids)
        again = await client.get_many(ids)
        assert again == first and client.cache.hits == 3 and client.cache.misses == 3
        await sink.write_profiles([make_profile("h0", version=4, orders=4, monetary="80.00")])
        await store.delete(customer_key("h1"))
        later = make_profile("h2", version=3, orders=3, monetary="60.00", segment="Loyal")  # same versions,
        await store.delete(customer_key("h2"))  # written again after an erasure: a new computed_at
        await sink.write_profiles([later.model_copy(update={"computed_at": datetime(2024, 2, 1, 0, 1, tzinfo=UTC)})])
        after = await client.get_many(ids)
        assert after["h0"] is not None and after["h0"].profile["orders"] == 4 and after["h0"].version == 4
        assert after["h1"] is None
        assert after["h2"] is not None and after["h2"].profile["segment"] == "Loyal"
        assert client.cache.hits == 3  # each of the three read again
        await publish(19_900)
        moved = await client.get_many(["h0", "h2"], fields=["scores_as_of"])
        assert {found.profile["scores_as_of"] for found in moved.values() if found} == {"2024-06-26T00:00:00+00:00"}
        await client.get_many(["h0", "h2", "h3"])
        await client.get_many(["h0", "h1", "h3"])
        assert len(client.cache) == 3  # bounded
    finally:
        await client.close()
        await store.aclose()


async def test_the_dashboard_shows_predicted_values_as_lookups_answer_them_now(test_redis: str,
                                                                               sink: RedisSink) -> None:
    """The predicted-value panel bins what a lookup answers now (the published purchase model's
    outlook), not the stored value of when each profile was written: without a model nothing
    is predicted; with one, every customer who bought is, in the bins of the lookups' values."""
    from stream.api.dashboard import summary, value_histogram
    from stream.core.purchase import BgNbd, GammaGamma
    from stream.core.purchase_outlook import PurchaseModel
    from stream.sinks.redis import PURCHASE_MODEL_KEY

    ids = [f"v{i}" for i in range(6)]
    await sink.write_profiles([make_profile(cid, version=3, orders=1 + i, monetary=f"{40 * (i + 1) ** 2}.00")
                               for i, cid in enumerate(ids)])
    client = AsyncLookupClient.from_url(test_redis, clock=lambda: NOW, models_ttl=0)
    store = aioredis.Redis.from_url(test_redis)
    try:
        before = (await summary(client, SEGMENTS))["value"]
        assert before["sampled"] == 6 and before["predicted"] == 0 and sum(before["bins"]) == 0
        model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44), 19_730, 900, 300)
        await store.set(PURCHASE_MODEL_KEY, json.dumps({**model.to_json(), "horizon_days": 90}))
        shown = (await summary(client, SEGMENTS))["value"]
        answers = await client.get_many(ids, fields=["predicted_value", "potential"])
        values = [float(found.profile["predicted_value"]) for found in answers.values() if found is not None]
        assert len(values) == 6 and len(set(values)) > 1
        assert shown["predicted"] == 6 and shown["bins"] == value_histogram(values)
        assert shown["total"] == round(sum(values), 2)
        assert sum(shown["potential"].values()) == sum(1 for found in answers.values()
                                                       if found is not None and "potential" in found.profile)
    finally:
        await client.close()
        await store.aclose()


async def test_a_lookup_user_without_scripting_gets_batches_read_in_full(test_redis: str, sink: RedisSink) -> None:
    """A Redis ACL user refused the batch script still gets every batch, read in a pipeline
    with nothing held, and the same answers as a user with it."""
    import secrets
    from urllib.parse import urlsplit

    await sink.write_profiles([make_profile("c1", version=3, orders=2, segment="Loyal"),
                               make_profile("c2", version=1, orders=1)])
    admin = aioredis.Redis.from_url(test_redis)
    user, password = f"pulse-test-reader-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    await admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                            commands=["+@read", "+@connection", "-@scripting"])
    where = urlsplit(test_redis)
    reader = AsyncLookupClient.from_url(f"redis://{user}:{password}@{where.hostname}:{where.port}{where.path}",
                                        clock=lambda: NOW)
    full = AsyncLookupClient.from_url(test_redis, clock=lambda: NOW)
    try:
        for fields in (None, ["segment"], None):
            ids = ["c1", "c2", "nobody"]
            assert await reader.get_many(ids, fields) == await full.get_many(ids, fields)
        assert reader.scripting is False and len(reader.cache) == 0
        assert full.scripting and full.cache.hits == 2
    finally:
        await reader.close()
        await full.close()
        await admin.acl_deluser(user)
        await admin.aclose()


async def test_a_batch_answers_found_and_missing_ids_in_one_call(api: httpx.AsyncClient, sink: RedisSink) -> None:
    await sink.write_profiles([make_profile(f"c{i}", version=2, orders=i, segment="Loyal") for i in range(1, 6)])
    ids = [f"c{i}" for i in range(1, 8)]
    body = (await api.post("/v1/customers:batch", json={"ids": ids, "fields": ["orders"]}, headers=AUTH)).json()
    assert {cid: c["profile"] for cid, c in body["customers"].items()} == {f"c{i}": {"orders": i} for i in range(1, 6)}
    assert body["missing"] == ["c6", "c7"]


async def test_segment_pages_cover_every_member_once(api: httpx.AsyncClient, sink: RedisSink) -> None:
    members = {f"s{i:03d}" for i in range(250)}
    await sink.write_profiles([make_profile(cid, version=1, orders=1, segment="At Risk") for cid in members])
    await sink.write_profiles([make_profile("other", version=1, orders=1, segment="Loyal")])
    seen: list[str] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = (await api.get("/v1/segments/At Risk/customers", params={"cursor": cursor, "limit": 100},
                              headers=AUTH)).json()
        seen += page["customers"]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) and set(seen) == members
    empty = (await api.get("/v1/segments/Champions/customers", headers=AUTH)).json()
    assert empty == {"segment": "Champions", "customers": [], "next_cursor": None}


def _alert(cid: str, kind: str) -> Alert:
    return Alert(alert_id=f"{cid}:{kind}:1", customer_id=cid, kind=kind, severity="high",  # type: ignore[arg-type]
                 score=0.9, threshold=0.7, reason="silent", event_time=datetime(2024, 3, 1, tzinfo=UTC),
                 explanation=(Contribution(feature="recency_ratio", contribution=1.0),),
                 model_version="heuristic-1", rules_version="r1")


async def test_recent_alerts_filter_by_kind_and_time(api: httpx.AsyncClient, sink: RedisSink) -> None:
    await sink.write_alerts([_alert("a1", "churn_risk"), _alert("a2", "inactivity")])
    cutoff = datetime.now(UTC) + timedelta(milliseconds=5)
    time.sleep(0.02)
    await sink.write_alerts([_alert("a3", "churn_risk")])
    everything = (await api.get("/v1/alerts", headers=AUTH)).json()["alerts"]
    assert [a["customer_id"] for a in everything] == ["a3", "a2", "a1"]  # newest first
    churn = (await api.get("/v1/alerts", params={"kind": "churn_risk"}, headers=AUTH)).json()["alerts"]
    assert [a["customer_id"] for a in churn] == ["a3", "a1"]
    since = (await api.get("/v1/alerts", params={"since": cutoff.isoformat()}, headers=AUTH)).json()["alerts"]
    assert [a["customer_id"] for a in since] == ["a3"]
    one = (await api.get("/v1/alerts", params={"limit": 1}, headers=AUTH)).json()["alerts"]
    assert [a["alert_id"] for a in one] == ["a3:churn_risk:1"]


async def test_cross_sell_rules_are_served_strongest_first_and_filtered_by_antecedent(
        api: httpx.AsyncClient, test_redis: str) -> None:

    from stream.core.affinity import affinity_document, rules

    missing = await api.get("/v1/affinity", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    found = rules({"*": 100, "books": 20, "toys": 30},
                  {("*", "music"): 10, ("*", "games"): 20, ("books", "music"): 8, ("toys", "games"): 9,
                   ("books", "games"): 6})
    writer = aioredis.Redis.from_url(test_redis)
    await writer.set("pulse:affinity", json.dumps(affinity_document(100, found)))
    await writer.aclose()
    assert (await api.get("/v1/affinity")).status_code == 401
    body = (await api.get("/v1/affinity", headers=AUTH)).json()
    assert [(r["if"], r["then"], r["lift"]) for r in body["rules"]] == [
        ("books", "music", 4.0), ("books", "games", 1.5), ("toys", "games", 1.5)]
    assert body["purchases"] == 100 and body["window_days"] == 30
    books = (await api.get("/v1/affinity", params={"if": "books", "limit": 1}, headers=AUTH)).json()["rules"]
    assert [(r["if"], r["then"]) for r in books] == [("books", "music")]


async def test_the_behavioural_clusters_are_served_as_published(api: httpx.AsyncClient, test_redis: str) -> None:
    import random

    from stream.core.clusters import FEATURES, fit

    missing = await api.get("/v1/clusters", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    rng = random.Random(1)
    model = fit([tuple(rng.gauss(c, 0.2) for _ in FEATURES) for c in (1, 3) for _ in range(30)], clusters=2)
    writer = aioredis.Redis.from_url(test_redis)
    await writer.set("pulse:clusters", json.dumps({**model.to_json(), "fitted_at": "2026-12-02T15:00:00+00:00"}))
    await writer.aclose()
    assert (await api.get("/v1/clusters")).status_code == 401
    body = (await api.get("/v1/clusters", headers=AUTH)).json()
    assert body["version"] == model.version and body["k"] == 2 and body["features"] == list(FEATURES)
    assert [c["id"] for c in body["clusters"]] == [0, 1] and sorted(c["size"] for c in body["clusters"]) == [30, 30]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("hung", [False, True], ids=["refused", "hung"])
async def test_redis_down_or_hung_answers_503_with_retry_after_never_hanging(hung: bool, silent_server: int) -> None:
    url = f"redis://127.0.0.1:{silent_server if hung else free_port()}/0"
    async with _api(url) as api:
        for method, path in (("GET", "/v1/customers/c1"), ("POST", "/v1/customers:batch"), ("GET", "/v1/alerts"),
                             ("GET", "/v1/health")):
            started = time.monotonic()
            answer = await api.request(method, path, headers=AUTH, json={"ids": ["c1"]})
            assert time.monotonic() - started < 2.0, path
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["Retry-After"] == "2"
        assert answer.json() == {"status": "unavailable", "redis": "down"}


def test_the_direct_client_reads_the_same_answers(test_redis: str) -> None:
    import asyncio

    async def write() -> None:
        sink = RedisSink.from_url(test_redis)
        await sink.write_profiles([make_profile("d1", version=5, orders=4, segment="Champions"),
                                   make_profile("d2", version=1, orders=1)])
        await sink.close()

    asyncio.run(write())
    client = LookupClient.from_url(test_redis, clock=lambda: NOW, models_ttl=0)  # each model as it is published
    try:
        one = client.get("d1", fields=["segment", "orders"])
        assert one is not None and one.profile == {"segment": "Champions", "orders": 4} and one.version == 5
        assert one.staleness_seconds == 300.0 and one.status == "fresh"
        many = client.get_many(["d1", "d2", "d3"], max_age_seconds=10)
        assert many["d3"] is None and many["d1"] is not None and many["d2"] is not None
        assert many["d1"].status == many["d2"].status == "stale" and many["d2"].profile["orders"] == 1
        page = client.segment_page("Champions")
        assert page.customers == ["d1"] and page.next_cursor is None
    finally:
        client.close()


def test_pulse_serve_needs_tokens_and_serves_with_them(isolated: Isolated) -> None:
    import subprocess
    import sys

    base_env = {**os.environ, **isolated.env}
    base_env.pop("PULSE_API_TOKENS", None)
    refused = run_pulse(base_env, "serve", timeout=60, check=False)
    assert refused.returncode == 2 and "PULSE_API_TOKENS" in refused.stderr
    remote = run_pulse(base_env, "serve", "--no-auth", "--host", "0.0.0.0", timeout=60, check=False)
    assert remote.returncode == 2 and "loopback" in remote.stderr

    port = free_port()
    env = {**base_env, "PULSE_API_TOKENS": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, "pulse serve answering")
        assert httpx.get(f"{base}/v1/customers/x", timeout=2).status_code == 401
        answer = httpx.get(f"{base}/v1/customers/x", headers=AUTH, timeout=2)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_metrics_parse_and_count_requests_by_route_and_segment_sizes(api: httpx.AsyncClient,
                                                                          sink: RedisSink) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    await sink.write_profiles([make_profile(f"m{i}", version=1, orders=1, segment="Loyal") for i in range(7)])
    for _ in range(3):
        assert (await api.get("/v1/customers/m1", headers=AUTH)).status_code == 200
    assert (await api.get("/v1/customers/nobody", headers=AUTH)).status_code == 404
    answer = await api.get("/metrics")  # open, like /v1/health
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = [s for family in text_string_to_metric_families(answer.text) for s in family.samples]
    counts = {(s.labels["route"], s.labels["status"]): s.value for s in samples
              if s.name == "pulse_api_request_seconds_count"}
    assert counts[("/v1/customers/{customer_id}", "200")] == 3
    assert counts[("/v1/customers/{customer_id}", "404")] == 1
    sizes = {s.labels["segment"]: s.value for s in samples if s.name == "pulse_segment_customers"}
    assert sizes == {"Loyal": 7, "Champions": 0, "At Risk": 0}
    async def held() -> dict[str, float]:
        text = (await api.get("/metrics")).text
        return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
                if s.name.startswith("pulse_api_batch_answers")}

    before = await held()
    for _ in range(3):  # batches: their answers read once, then held
        batch = await api.post("/v1/customers:batch", json={"ids": ["m3", "m4", "nobody"]}, headers=AUTH)
        assert batch.status_code == 200 and batch.json()["missing"] == ["nobody"]
    after = await held()
    assert {name: after[name] - before.get(name, 0) for name in after} == {
        "pulse_api_batch_answers_held_total": 4, "pulse_api_batch_answers_read_total": 5,
        "pulse_api_batch_answers_holding": 2}


def test_purchase_model_scores_are_read_as_of_the_published_models_now(test_redis: str) -> None:
    import asyncio

    import redis

    from stream.core.purchase import BgNbd, GammaGamma
    from stream.core.purchase_outlook import PurchaseModel
    from stream.sinks.redis import PURCHASE_MODEL_KEY

    async def write() -> None:
        sink = RedisSink.from_url(test_redis)
        await sink.write_profiles([make_profile("p1", version=3, orders=3, monetary="60.00")])  # silent since Jan 3
        await sink.close()

    asyncio.run(write())
    client = LookupClient.from_url(test_redis, clock=lambda: NOW, models_ttl=0)  # each model as it is published
    store = redis.Redis.from_url(test_redis)
    try:
        without = client.get("p1")
        assert without is not None and "purchase_churn_probability" not in without.profile  # no model: no claim
        readings = {}
        for as_of_day in (19_730, 19_900):  # 2024-01-08 and 2024-06-26 (2024-01-01 is day 19,723)
            model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44), as_of_day, 900, 300)
            store.set(PURCHASE_MODEL_KEY, json.dumps({**model.to_json(), "horizon_days": 90}))
            found = client.get("p1", fields=["purchase_churn_probability", "scores_as_of", "p_alive"])
            assert found is not None and set(found.profile) == {"purchase_churn_probability", "scores_as_of", "p_alive"}
            readings[as_of_day] = found.profile
        assert readings[19_900]["scores_as_of"] == "2024-06-26T00:00:00+00:00"
        assert readings[19_900]["purchase_churn_probability"] > readings[19_730]["purchase_churn_probability"]
        assert readings[19_900]["p_alive"] < readings[19_730]["p_alive"]
    finally:
        client.close()
        store.close()


async def test_delete_requests_an_erasure_and_the_receipt_is_served_once_stored(test_redis: str) -> None:
    from stream.core.erasure import ErasureRequest
    from stream.sinks.erasure import store_receipt

    requested: list[str] = []

    async def erase(customer_id: str) -> ErasureRequest:
        requested.append(customer_id)
        return ErasureRequest.new(customer_id, NOW)

    client = AsyncLookupClient.from_url(test_redis, clock=lambda: NOW)
    app = create_app(client, [TOKEN], SEGMENTS, erase=erase)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pulse") as api:
        assert (await api.delete("/v1/customers/c1")).status_code == 401
        assert requested == []
        answer = await api.delete("/v1/customers/c1", headers=AUTH)
        assert answer.status_code == 202 and requested == ["c1"]
        request_id = answer.json()["request_id"]
        assert answer.headers["Location"] == answer.json()["receipt"] == f"/v1/privacy/receipts/{request_id}"
        pending = await api.get(answer.headers["Location"], headers=AUTH)
        assert pending.status_code == 404 and pending.json()["error"]["code"] == "not_found"
        receipt = {"request_id": request_id, "stores": [{"store": "redis hash pulse:cust:{id}", "removed": 1}]}
        writer = aioredis.Redis.from_url(test_redis)
        await store_receipt(writer, receipt)
        await writer.aclose()
        assert (await api.get(answer.headers["Location"], headers=AUTH)).json() == receipt
    without_kafka = create_app(client, [TOKEN], SEGMENTS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=without_kafka), base_url="http://pulse") as api:
        refused = await api.delete("/v1/customers/c1", headers=AUTH)
        assert refused.status_code == 503 and "Kafka" in refused.json()["error"]["message"]


async def test_with_pseudonymous_keys_the_raw_id_finds_the_stored_profile(test_redis: str, sink: RedisSink) -> None:
    from stream.settings import Settings

    settings = Settings(pseudonym_key="pseudonym-key-0123456789")
    hidden = settings.stored_id("c1")
    await sink.write_profiles([make_profile(hidden, version=3, orders=2)])
    client = AsyncLookupClient.from_url(test_redis, clock=lambda: NOW, stored_id=settings.stored_id)
    app = create_app(client, [TOKEN], SEGMENTS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pulse") as api:
        one = await api.get("/v1/customers/c1", headers=AUTH)
        assert one.status_code == 200 and one.json()["profile"]["orders"] == 2
        batch = (await api.post("/v1/customers:batch", json={"ids": ["c1", "c2"]}, headers=AUTH)).json()
        assert list(batch["customers"]) == ["c1"] and batch["missing"] == ["c2"]
        assert (await api.get(f"/v1/customers/{hidden}", headers=AUTH)).status_code == 404


async def test_pulse_serve_uses_a_newly_published_model_within_its_models_ttl(test_redis: str,
                                                                             sink: RedisSink) -> None:

    from stream.core.purchase import BgNbd, GammaGamma
    from stream.core.purchase_outlook import PurchaseModel
    from stream.sinks.redis import PURCHASE_MODEL_KEY

    await sink.write_profiles([make_profile("p1", version=3, orders=3, monetary="60.00")])
    clock = [100.0]
    client = AsyncLookupClient.from_url(test_redis, clock=lambda: NOW, models_ttl=1.0, monotonic=lambda: clock[0])
    store = aioredis.Redis.from_url(test_redis)

    async def publish(as_of_day: int) -> None:
        model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44), as_of_day, 900, 300)
        await store.set(PURCHASE_MODEL_KEY, json.dumps({**model.to_json(), "horizon_days": 90}))

    async def as_of() -> str:
        found = await client.get("p1", fields=["scores_as_of"])
        assert found is not None
        return str(found.profile["scores_as_of"])

    try:
        await publish(19_730)
        assert await as_of() == "2024-01-08T00:00:00+00:00"
        await publish(19_900)
        clock[0] += 0.5
        assert await as_of() == "2024-01-08T00:00:00+00:00"  # within the TTL: the model read before
        batch = await client.get_many(["p1", "nobody"], fields=["scores_as_of"])
        assert batch["p1"] is not None and batch["p1"].profile["scores_as_of"] == "2024-01-08T00:00:00+00:00"
        clock[0] += 0.6
        assert await as_of() == "2024-06-26T00:00:00+00:00"  # past it: the newly published one
    finally:
        await client.close()
        await store.aclose()
