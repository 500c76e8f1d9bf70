"""One contract suite for every ProfileSink implementation (memory in unit tests, Redis in integration)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

from schemas import Alert, Contribution, Profile, TagChange
from stream.sinks import ProfileSink


def make_profile(customer_id: str, version: int, orders: int, monetary: str = "1.00",
                 segment: str | None = None, event_version: int | None = None) -> Profile:
    return Profile(
        segment=segment, event_version=version if event_version is None else event_version,
        customer_id=customer_id, version=version, events=version, orders=orders, monetary=monetary,
        first_purchase_at=datetime(2024, 1, 1, tzinfo=UTC),
        last_purchase_at=datetime(2024, 1, version, tzinfo=UTC),
        as_of_event_time=datetime(2024, 1, version, tzinfo=UTC),
        computed_at=datetime(2024, 2, 1, tzinfo=UTC), rules_version="r1", model_version="none",
    )


class SinkContract:
    """Subclass and provide an async ``sink`` fixture."""

    @staticmethod
    def cid() -> str:
        return f"contract-{uuid.uuid4().hex[:10]}"

    async def test_write_then_read(self, sink: ProfileSink) -> None:
        cid = self.cid()
        assert await sink.write_profiles([make_profile(cid, 1, 1, "9.99")]) == 1
        row = await sink.read_profile(cid)
        assert row is not None
        assert (row["orders"], row["monetary"], row["version"]) == ("1", "9.99", "1")
        assert row["last_purchase_at"] == "2024-01-01T00:00:00+00:00"

    async def test_ids_and_values_beyond_ascii_come_back_as_written(self, sink: ProfileSink) -> None:
        cid, segment = f"{self.cid()}-café-客户", f"Ünter-{uuid.uuid4().hex[:6]}"
        assert await sink.write_profiles([make_profile(cid, 1, 1, segment=segment)]) == 1
        row = await sink.read_profile(cid)
        assert row is not None and (row["customer_id"], row["segment"]) == (cid, segment)
        assert await sink.segment_members(segment) == {cid}

    async def test_each_written_version_carries_the_write_time(self, sink: ProfileSink) -> None:
        cid = self.cid()
        before = int(time.time() * 1000)
        await sink.write_profiles([make_profile(cid, 1, 1)])
        row = await sink.read_profile(cid)
        assert row is not None and before - 1000 <= int(row["written_at"]) <= int(time.time() * 1000) + 1000
        first = row["written_at"]
        assert row["stamp"] == f"1:1:{first}"  # what tells this write from any other
        await asyncio.sleep(0.01)
        await sink.write_profiles([make_profile(cid, 1, 1)])  # the same version: not written again
        row = await sink.read_profile(cid)
        assert row is not None and row["written_at"] == first and row["stamp"] == f"1:1:{first}"
        await asyncio.sleep(0.01)
        await sink.write_profiles([make_profile(cid, 2, 1)])
        row = await sink.read_profile(cid)
        assert row is not None and row["stamp"] == f"2:2:{row['written_at']}" and row["written_at"] != first

    async def test_replaying_the_same_version_writes_nothing(self, sink: ProfileSink) -> None:
        cid = self.cid()
        await sink.write_profiles([make_profile(cid, 2, 2)])
        assert await sink.write_profiles([make_profile(cid, 2, 99)]) == 0
        row = await sink.read_profile(cid)
        assert row is not None and row["orders"] == "2"

    async def test_an_older_version_never_overwrites_a_newer_one(self, sink: ProfileSink) -> None:
        cid = self.cid()
        await sink.write_profiles([make_profile(cid, 5, 5)])
        assert await sink.write_profiles([make_profile(cid, 3, 3)]) == 0
        row = await sink.read_profile(cid)
        assert row is not None and (row["orders"], row["version"]) == ("5", "5")

    async def test_more_events_applied_replace_a_higher_revision_of_a_lost_batch(self, sink: ProfileSink) -> None:
        # A worker sent a batch's profiles and stopped before storing its state; the redo of the
        # batch had fewer time-driven changes (ticks and population rescores fall at other times),
        # so its revisions are lower. The profile that applied more events is the newer one.
        cid = self.cid()
        await sink.write_profiles([make_profile(cid, 9, 2, event_version=4)])  # 4 events and 5 sweeps, lost
        assert await sink.write_profiles([make_profile(cid, 6, 2, event_version=4)]) == 0  # redone up to there
        assert await sink.write_profiles([make_profile(cid, 7, 3, "3.00", event_version=5)]) == 1  # and beyond
        row = await sink.read_profile(cid)
        assert row is not None and (row["orders"], row["version"], row["event_version"]) == ("3", "7", "5")
        # within one history a time-driven change (same events, next revision) still replaces
        assert await sink.write_profiles([make_profile(cid, 8, 3, "3.00", event_version=5)]) == 1
        assert await sink.write_profiles([make_profile(cid, 12, 2, event_version=4)]) == 0  # fewer events: older

    async def test_newer_version_replaces(self, sink: ProfileSink) -> None:
        cid = self.cid()
        await sink.write_profiles([make_profile(cid, 1, 1)])
        assert await sink.write_profiles([make_profile(cid, 4, 3, "30.00")]) == 1
        row = await sink.read_profile(cid)
        assert row is not None and (row["orders"], row["monetary"]) == ("3", "30.00")

    async def test_a_newer_profile_without_aliases_clears_them(self, sink: ProfileSink) -> None:
        cid = self.cid()
        await sink.write_profiles([make_profile(cid, 1, 1).model_copy(update={"aliases": "d-1,d-2"})])
        row = await sink.read_profile(cid)
        assert row is not None and row["aliases"] == "d-1,d-2"
        await sink.write_profiles([make_profile(cid, 2, 1)])  # after an unlink of both
        row = await sink.read_profile(cid)
        assert row is not None and "aliases" not in row and row["version"] == "2"

    async def test_a_batch_of_many_customers(self, sink: ProfileSink) -> None:
        cids = [self.cid() for _ in range(50)]
        assert await sink.write_profiles([make_profile(c, 1, i) for i, c in enumerate(cids)]) == 50
        for i, c in enumerate(cids):
            row = await sink.read_profile(c)
            assert row is not None and row["orders"] == str(i)

    async def test_segment_sets_follow_the_newest_profile(self, sink: ProfileSink) -> None:
        cid, tag = self.cid(), uuid.uuid4().hex[:6]
        loyal, at_risk = f"Loyal-{tag}", f"At Risk-{tag}"
        await sink.write_profiles([make_profile(cid, 1, 1, segment=loyal)])
        assert cid in await sink.segment_members(loyal)
        await sink.write_profiles([make_profile(cid, 3, 1, segment=at_risk)])
        assert cid not in await sink.segment_members(loyal)
        assert cid in await sink.segment_members(at_risk)
        # a late, older profile changes neither the hash nor the sets
        await sink.write_profiles([make_profile(cid, 2, 1, segment=loyal)])
        assert cid not in await sink.segment_members(loyal)
        assert (await sink.read_profile(cid) or {})["segment"] == at_risk

    async def test_tag_changes_are_appended_once(self, sink: ProfileSink) -> None:
        cid = self.cid()
        change = TagChange(change_id=f"{cid}:segment:4", customer_id=cid, tag="segment", old="Loyal",
                           new="At Risk", reason="time", event_time=datetime(2024, 3, 1, tzinfo=UTC),
                           version=4, rules_version="r1")
        assert await sink.write_tag_changes([change]) == 1
        assert await sink.write_tag_changes([change, change]) == 0
        mine = [c for c in await sink.tag_changes() if c["customer_id"] == cid]
        assert len(mine) == 1 and (mine[0]["old"], mine[0]["new"], mine[0]["reason"]) == ("Loyal", "At Risk", "time")

    async def test_a_tag_change_before_the_newest_added_is_a_redelivery(self, sink: ProfileSink) -> None:
        cid = self.cid()

        def change(tag: str, version: int) -> TagChange:
            return TagChange(change_id=f"{cid}:{tag}:{version}", customer_id=cid, tag=tag, old=None, new="x",
                             reason="event:purchase", event_time=datetime(2024, 3, 1, tzinfo=UTC), version=version,
                             rules_version="r1")

        assert await sink.write_tag_changes([change("segment", 5), change("rfm", 5)]) == 2
        # the same batch again (a redelivery), and an older version: nothing added
        assert await sink.write_tag_changes([change("segment", 5), change("rfm", 5), change("rfm", 4)]) == 0
        # newer versions: added, in order
        assert await sink.write_tag_changes([change("segment", 6), change("lifecycle", 6)]) == 2
        mine = [(c["tag"], c["version"]) for c in await sink.tag_changes() if c["customer_id"] == cid]
        assert mine == [("segment", "5"), ("rfm", "5"), ("segment", "6"), ("lifecycle", "6")]

    async def test_tag_changes_with_more_events_applied_follow_a_higher_revision_of_a_lost_batch(
            self, sink: ProfileSink) -> None:
        # as with profiles: the redo of a lost batch can reach lower revisions than the lost writes
        cid = self.cid()

        def change(tag: str, version: int, event_version: int) -> TagChange:
            return TagChange(change_id=f"{cid}:{tag}:{version}", customer_id=cid, tag=tag, old=None, new="x",
                             reason="event:purchase", event_time=datetime(2024, 3, 1, tzinfo=UTC), version=version,
                             rules_version="r1", event_version=event_version)

        assert await sink.write_tag_changes([change("segment", 9, 4)]) == 1  # lost: 4 events and 5 sweeps
        assert await sink.write_tag_changes([change("segment", 6, 4), change("segment", 7, 5),
                                             change("rfm", 7, 5)]) == 2  # the redo, and beyond
        assert await sink.write_tag_changes([change("rfm", 7, 5), change("lifecycle", 12, 4)]) == 0
        mine = [(c["tag"], c["version"], c["event_version"]) for c in await sink.tag_changes()
                if c["customer_id"] == cid]
        assert mine == [("segment", "9", "4"), ("segment", "7", "5"), ("rfm", "7", "5")]

    async def test_alerts_are_appended_once_with_their_explanation(self, sink: ProfileSink) -> None:
        cid = self.cid()
        alert = Alert(alert_id=f"{cid}:churn_risk:7", customer_id=cid, kind="churn_risk", severity="high",
                      score=0.81, threshold=0.7, reason="silent for 3 usual gaps",
                      explanation=(Contribution(feature="recency_ratio", contribution=1.2),),
                      event_time=datetime(2024, 3, 1, tzinfo=UTC), model_version="heuristic-1", rules_version="r1")
        assert await sink.write_alerts([alert]) == 1
        assert await sink.write_alerts([alert, alert]) == 0
        mine = [a for a in await sink.alerts() if a["customer_id"] == cid]
        assert len(mine) == 1 and (mine[0]["kind"], mine[0]["score"]) == ("churn_risk", "0.81")
        assert json.loads(mine[0]["explanation"]) == [{"feature": "recency_ratio", "contribution": 1.2}]

    async def test_unknown_customer_reads_none(self, sink: ProfileSink) -> None:
        assert await sink.read_profile(self.cid()) is None
