"""Valid usage events for tests, built from the example payload."""

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

EXAMPLE = json.loads((Path(__file__).parent / "examples" / "event.json").read_text())
_serial = itertools.count(1)


def event(**overrides) -> dict:
    """A valid event for customer acme, served a few minutes ago, with a fresh event_id."""
    body = dict(EXAMPLE, event_id=f"evt-{next(_serial):08d}",
                timestamp=(datetime.now(UTC) - timedelta(minutes=3)).isoformat())
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def token_sums(events) -> dict:
    return {
        "events": len(events),
        "input_tokens": sum(e["input_tokens"] for e in events),
        "cached_input_tokens": sum(e.get("cached_input_tokens", 0) for e in events),
        "output_tokens": sum(e["output_tokens"] for e in events),
    }


def nested(levels: int) -> dict:
    """A JSON object nesting `levels` objects, itself included."""
    value: object = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value
