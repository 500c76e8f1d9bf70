from __future__ import annotations

import json

from schemas.export import SCHEMA_FILE, render


def test_exported_json_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text() == render(), (
        "schemas/json/event.schema.json is stale: run `python -m schemas.export`")


def test_the_schema_covers_every_event_type() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    types = set(schema["discriminator"]["mapping"])
    assert types == {"page_view", "product_view", "search", "add_to_cart", "remove_from_cart",
                     "checkout_start", "wishlist_add", "purchase", "refund", "support_contact", "identify"}
