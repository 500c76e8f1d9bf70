from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import Purchase, parse_event
from stream.io.replay import ReplayError, paced, read_cdnow, read_events, select


def test_cdnow_lines_become_valid_purchases_with_stable_ids(tmp_path: Path) -> None:
    log = tmp_path / "CDNOW_master.txt"
    log.write_text(" 00001 19970101  1   11.77\n 00002 19970112  2   24.00\n 00002 19970302  3    0.00\n")
    events = list(read_cdnow(log))
    assert [e["event_id"] for e in events] == [f"cdnow:CDNOW_master.txt:{n}" for n in (1, 2, 3)]
    assert events == list(read_cdnow(log))
    first = parse_event(__import__("json").dumps(events[1]))
    assert isinstance(first, Purchase)
    assert (first.customer_id, str(first.total), first.event_time) == (
        "00002", "24.00", datetime(1997, 1, 12, tzinfo=UTC))


def test_a_broken_cdnow_line_names_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "bad.txt"
    log.write_text(" 00001 19970101  1   11.77\n 00002 1997xx12  1   1\n")
    with pytest.raises(ReplayError, match=r"bad.txt:2"):
        list(read_cdnow(log))


def test_until_filters_and_orders_by_event_time(tmp_path: Path) -> None:
    log = tmp_path / "e.jsonl"
    log.write_text('{"event_id": "b", "event_time": "2024-01-03T00:00:00+00:00"}\n'
                   '{"event_id": "a", "event_time": "2024-01-01T00:00:00+00:00"}\n'
                   '{"event_id": "c", "event_time": "2024-02-01T00:00:00+00:00"}\n')
    chosen = select(read_events(log, "jsonl"), datetime(2024, 1, 31, tzinfo=UTC))
    assert [e["event_id"] for e in chosen] == ["a", "b"]


def test_speed_paces_by_event_time() -> None:
    events = [{"event_time": "2024-01-01T00:00:00+00:00"}, {"event_time": "2024-01-01T01:00:00+00:00"}]
    slept: list[float] = []
    out = list(paced(events, speed=3600.0, sleep=slept.append))
    assert out == events
    assert len(slept) == 1 and 0.9 < slept[0] <= 1.0


def test_csv_rows_become_events_with_nested_json_cells(tmp_path: Path) -> None:
    sheet = tmp_path / "e.csv"
    sheet.write_text(
        "type,event_id,customer_id,event_time,order_id,total,items\n"
        'purchase,e1,c1,2024-01-01T00:00:00+00:00,o1,5.00,"[{""sku"": ""a"", ""quantity"": 1, '
        '""unit_price"": ""5.00""}]"\n'
        "page_view,e2,c1,2024-01-02T00:00:00+00:00,,,\n")
    events = list(read_events(sheet, "csv"))
    assert [e["type"] for e in events] == ["purchase", "page_view"]
    purchase = parse_event(__import__("json").dumps(events[0]))
    assert isinstance(purchase, Purchase) and purchase.items[0].sku == "a"
    assert "order_id" not in events[1]
