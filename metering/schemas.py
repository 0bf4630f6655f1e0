"""The usage event wire schema (DESIGN.md §1) and its validation.

Pure: no Django, no database, no clock. The REST API and the ledger consumer both
call `event_validate`, so an event is judged by the same rules on either path.
Lateness is judged against the event's arrival time (the Kafka record timestamp),
so replaying a topic gives every element the verdict it had the first time.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

SERVICE_TIERS = ("standard", "batch", "priority")
TOKENS_MAX = 10**12  # per event; keeps every sum far inside a 64-bit integer
METADATA_BYTES_MAX = 4096
FIELDS = frozenset(
    {"event_id", "customer_id", "model", "timestamp", "input_tokens", "cached_input_tokens",
     "output_tokens", "service_tier", "region", "cluster", "metadata"}
)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z")

EXAMPLE_EVENT = {
    "event_id": "req_01JD8X3B6Q",
    "customer_id": "acme",
    "model": "gpt-5.4",
    "timestamp": "2026-11-03T14:07:31.218Z",
    "input_tokens": 1830,
    "cached_input_tokens": 1024,
    "output_tokens": 412,
    "service_tier": "standard",
    "region": "us-east",
    "cluster": "iad-h100-a",
    "metadata": {"request_id": "gw-7f3a"},
}


@dataclass(frozen=True, slots=True)
class Catalog:
    """What an event may name: known customer ids and model names."""

    customers: frozenset[str]
    models: frozenset[str]


@dataclass(frozen=True, slots=True)
class Rules:
    arrived_at: datetime
    lateness: timedelta
    future_skew: timedelta = timedelta(minutes=5)
    not_before: datetime = field(init=False)
    not_after: datetime = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "not_before", self.arrived_at - self.lateness)
        object.__setattr__(self, "not_after", self.arrived_at + self.future_skew)


@dataclass(frozen=True, slots=True)
class UsageEventIn:
    """A valid event, normalized: defaults applied, timestamp aware."""

    event_id: str
    customer_id: str
    model: str
    occurred_at: datetime
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    service_tier: str
    region: str
    cluster: str
    metadata: dict | None

    def payload(self) -> dict:
        """The normalized event as JSON, the form stored beside conflicts."""
        body = {
            "event_id": self.event_id, "customer_id": self.customer_id, "model": self.model,
            "timestamp": self.occurred_at.isoformat(), "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens, "output_tokens": self.output_tokens,
            "service_tier": self.service_tier,
        }
        if self.region:
            body["region"] = self.region
        if self.cluster:
            body["cluster"] = self.cluster
        if self.metadata is not None:
            body["metadata"] = self.metadata
        return body

    def digest(self) -> bytes:
        """Identity of the payload: equal digests mean an exact duplicate.

        Normalized first, so `Z` and `+00:00`, or an explicit default, do not make
        a retry look like a conflict.
        """
        metadata = json.dumps(self.metadata, sort_keys=True, separators=(",", ":")) if self.metadata is not None else ""
        canonical = "\x1f".join((
            self.customer_id, self.event_id, self.model, str(self.occurred_at.timestamp()),
            str(self.input_tokens), str(self.cached_input_tokens), str(self.output_tokens),
            self.service_tier, self.region, self.cluster, metadata,
        ))
        return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an element was refused: the first rule's code and every field's messages."""

    reason: str
    errors: dict[str, list[str]]


def _string(obj: dict, field: str, max_len: int, errors: dict, *, required: bool) -> str:
    value = obj.get(field)
    if value is None:
        if required:
            errors.setdefault(field, []).append(f"{field}_required:This field is required.")
        return ""
    if not isinstance(value, str):
        errors.setdefault(field, []).append(f"{field}_invalid:Must be a string.")
        return ""
    if (required and not value) or len(value) > max_len:
        errors.setdefault(field, []).append(f"{field}_length:Must be {1 if required else 0}–{max_len} characters.")
    return value


def _tokens(obj: dict, field: str, errors: dict, *, default: int | None = None) -> int:
    value = obj.get(field, default)
    if value is None:
        errors.setdefault(field, []).append(f"{field}_required:This field is required.")
        return 0
    if type(value) is not int:
        errors.setdefault(field, []).append(f"{field}_invalid:Must be an integer.")
        return 0
    if not 0 <= value <= TOKENS_MAX:
        errors.setdefault(field, []).append(f"{field}_out_of_range:Must be between 0 and {TOKENS_MAX}.")
    return value


def _timestamp(obj: dict, rules: Rules, errors: dict) -> datetime | None:
    value = obj.get("timestamp")
    if not isinstance(value, str) or not RFC3339.match(value):
        errors.setdefault("timestamp", []).append(
            "timestamp_invalid:Must be an RFC 3339 timestamp with an offset, e.g. 2026-11-03T14:07:31Z."
        )
        return None
    try:
        occurred_at = datetime.fromisoformat(value)
    except ValueError:
        errors.setdefault("timestamp", []).append("timestamp_invalid:Not a real date and time.")
        return None
    if occurred_at > rules.not_after:
        errors.setdefault("timestamp", []).append("timestamp_in_future:More than 5 minutes after arrival.")
    elif occurred_at < rules.not_before:
        errors.setdefault("timestamp", []).append(
            f"timestamp_too_old:Older than the lateness limit of {rules.lateness.days} days."
        )
    return occurred_at


def event_validate(obj, *, catalog: Catalog, rules: Rules) -> UsageEventIn | Invalid:
    """Check one element against every rule of DESIGN.md §1."""
    if not isinstance(obj, dict):
        return Invalid("not_an_object", {"non_field_errors": ["An event must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    unknown = obj.keys() - FIELDS
    if unknown:
        errors["non_field_errors"] = [f"unknown_field:Unknown field(s): {', '.join(sorted(unknown))}."]
    event_id = _string(obj, "event_id", 128, errors, required=True)
    customer_id = _string(obj, "customer_id", 64, errors, required=True)
    if customer_id and "customer_id" not in errors and customer_id not in catalog.customers:
        errors["customer_id"] = [f"customer_unknown:No customer '{customer_id}'."]
    model = _string(obj, "model", 128, errors, required=True)
    if model and "model" not in errors and model not in catalog.models:
        errors["model"] = [f"model_unknown:Model '{model}' is not in the catalog."]
    occurred_at = _timestamp(obj, rules, errors)
    input_tokens = _tokens(obj, "input_tokens", errors)
    cached = _tokens(obj, "cached_input_tokens", errors, default=0)
    if "input_tokens" not in errors and "cached_input_tokens" not in errors and cached > input_tokens:
        errors["cached_input_tokens"] = ["cached_exceeds_input:Must not exceed input_tokens."]
    output_tokens = _tokens(obj, "output_tokens", errors)
    service_tier = obj.get("service_tier", "standard")
    if service_tier not in SERVICE_TIERS:
        errors["service_tier"] = [f"service_tier_invalid:Must be one of {', '.join(SERVICE_TIERS)}."]
    region = _string(obj, "region", 64, errors, required=False)
    cluster = _string(obj, "cluster", 64, errors, required=False)
    metadata = obj.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors["metadata"] = ["metadata_invalid:Must be a JSON object."]
        elif len(json.dumps(metadata, separators=(",", ":")).encode()) > METADATA_BYTES_MAX:
            errors["metadata"] = [f"metadata_too_large:Must be at most {METADATA_BYTES_MAX} bytes serialized."]
    if errors:
        return _invalid(errors)
    return UsageEventIn(
        event_id=event_id, customer_id=customer_id, model=model, occurred_at=occurred_at,
        input_tokens=input_tokens, cached_input_tokens=cached, output_tokens=output_tokens,
        service_tier=service_tier, region=region, cluster=cluster, metadata=metadata,
    )


def _invalid(coded: dict[str, list[str]]) -> Invalid:
    """Split 'code:message' entries into the first code and readable messages."""
    first_code = next(iter(coded.values()))[0].partition(":")[0]
    return Invalid(first_code, {f: [m.partition(":")[2] for m in msgs] for f, msgs in coded.items()})
