"""Export the JSON Schema of the event contract: ``python -m schemas.export`` rewrites
``schemas/json/event.schema.json``; a test fails when the models and the file differ."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.events import EVENT_ADAPTER

SCHEMA_FILE = Path(__file__).parent / "json" / "event.schema.json"


def event_schema() -> dict[str, object]:
    schema = EVENT_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Customer Pulse input event (pulse.events)"
    return schema


def render() -> str:
    return json.dumps(event_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_FILE.write_text(render())
    print(f"wrote {SCHEMA_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
