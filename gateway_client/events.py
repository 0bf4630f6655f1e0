"""Building one usage event (DESIGN.md §1) from what a gateway knows about a request.

Pure: no Django, no I/O. An event is checked here by the server's own validator and
adapters (`metering.schemas`, `metering.provider_usage`, both pure) as far as a gateway
can check it without the catalog, so a gateway bug fails loudly in the calling code
instead of becoming a dead letter minutes later. Whether the customer, model and
service tier exist is the server's to judge.

An event is serialized once, here; every retry resends those exact bytes, so a
redelivery is always an exact duplicate (same digest) that the ledger drops and
counts, never a conflict.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta

from metering.provider_usage import token_fields
from metering.schemas import Catalog, Invalid, Rules, event_validate
from metering.token_classes import NEWER_FIELDS

EVENT_BYTES_MAX = 5 * 1024 * 1024 - 64  # one event must fit a batch message with its wrapper
# Lateness is the server's to judge (USAGE_LATENESS_DAYS there); here only the future skew.
LATENESS_UNBOUNDED = timedelta(days=365 * 100)


class InvalidEvent(ValueError):
    """The gateway asked to record something that can never be a valid usage event:
    `reason` is the validator's code, `errors` its field → messages."""

    def __init__(self, reason: str, errors: dict[str, list[str]]):
        super().__init__(f"{reason}: {errors}")
        self.reason, self.errors = reason, errors


def event_id_new() -> str:
    """A unique id for a request the gateway has no id for. Fixed when recorded, so every
    retry of the event carries it."""
    return f"gw_{uuid.uuid4().hex}"


def timestamp_text(value: datetime | str | None) -> str:
    if value is None:
        value = datetime.now(UTC)
    if isinstance(value, str):
        return value  # the validator judges it
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidEvent("timestamp_invalid", {"timestamp": [
            "Must be an aware datetime or an RFC 3339 string with an offset."]})
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_build(*, customer_id, model, event_id, timestamp, tokens: dict | None, provider_usage,
                service_tier, region, cluster, metadata) -> dict:
    """The event as it will travel, judged by the server's own validator
    (metering.schemas.event_validate) with a catalog that knows this event's names: whether
    the customer, model and tier exist is the server's to say, everything else is said here.
    A provider object's adapter raises its own UsageUnreadable."""
    event = {"event_id": event_id, "customer_id": customer_id, "model": model, "timestamp": timestamp_text(timestamp)}
    if provider_usage is not None:
        token_fields(provider_usage)
        event["provider_usage"] = provider_usage
    # The newer fields travel only when not 0: the event means what it meant before they
    # existed (same digest, same price) and a server that predates them accepts it.
    event.update({name: value for name, value in (tokens or {}).items() if value or name not in NEWER_FIELDS})
    event["service_tier"] = service_tier
    event.update({name: value for name, value in (("region", region), ("cluster", cluster)) if value})
    if metadata is not None:
        event["metadata"] = metadata
    names = [value for value in (customer_id, model, service_tier) if isinstance(value, str)]
    verdict = event_validate(event, catalog=Catalog(frozenset(names), frozenset(names), frozenset(names)),
                             rules=Rules(arrived_at=datetime.now(UTC), lateness=LATENESS_UNBOUNDED))
    if isinstance(verdict, Invalid):
        raise InvalidEvent(verdict.reason, verdict.errors)
    return event


def _encoded(value) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidEvent(f"not serializable as strict JSON: {exc}") from exc


def event_encode(event: dict) -> bytes:
    body = _encoded(event)
    if len(body) > EVENT_BYTES_MAX:
        raise InvalidEvent(f"the event is {len(body)} bytes serialized; a message holds at most {EVENT_BYTES_MAX}")
    return body
