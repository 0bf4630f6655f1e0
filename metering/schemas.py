"""The usage event wire schema (DESIGN.md §1) and its validation.

Pure: no Django, no database, no clock. The REST API and the ledger consumer both
call `event_validate`, so an event is judged by the same rules on either path.
Lateness is judged against the event's arrival time (the Kafka record timestamp),
so replaying a topic gives every element the verdict it had the first time.

An event that passes `event_validate` is one Postgres can store: no string field,
metadata key or metadata value holds a NUL (text and jsonb refuse it) or a lone UTF-16
surrogate (not Unicode: it cannot even be encoded to UTF-8 for the wire), metadata
numbers are finite (jsonb has no NaN or Infinity) and metadata nests at most
METADATA_DEPTH_MAX levels. `json_loads` decodes a body of any depth without
RecursionError, so a deep document is refused by the rule it breaks, never by a crash.
"""

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from metering.provider_usage import UsageUnreadable, token_fields
from metering.token_classes import FIELDS as TOKEN_FIELDS
from metering.token_classes import INPUT_PARTS, NEWER_FIELDS

SERVICE_TIERS_SEEDED = ("standard", "batch", "priority", "flex", "provisioned")  # the catalog's first tiers
TOKENS_MAX = 10**12  # per event; keeps every sum far inside a 64-bit integer
METADATA_BYTES_MAX = 4096
METADATA_DEPTH_MAX = 32  # levels of objects/arrays, the metadata object itself being the first
# json_loads cuts containers nested deeper than this: far below what Python's json,
# Django and DRF can recurse through, above where a legal body ends (`{"events": [{
# "metadata": ...`: 3 + METADATA_DEPTH_MAX), so a cut is always inside something refused.
DOCUMENT_DEPTH_MAX = 64
FIELDS = frozenset(
    {"event_id", "customer_id", "model", "timestamp", "service_tier", "region", "cluster", "metadata",
     "provider_usage", *TOKEN_FIELDS}
)
PROVIDER_USAGE_BYTES_MAX = 8192
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A JSON string (possessive, so an unterminated one cannot make the scan quadratic) or a bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
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
    """What an event may name: known customer ids, model names and service tiers."""

    customers: frozenset[str]
    models: frozenset[str]
    service_tiers: frozenset[str] = frozenset(SERVICE_TIERS_SEEDED)


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
    cache_write_tokens: int = 0
    cache_write_long_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    reasoning_tokens: int = 0
    provider_usage: dict | None = None  # as the gateway sent it; the token fields above are read from it

    def _newer(self) -> dict:
        """The newer token fields that are not 0, and the provider's usage object if any:
        what an event that predates them does not have."""
        newer = {name: value for name in NEWER_FIELDS if (value := getattr(self, name))}
        if self.provider_usage is not None:
            newer["provider_usage"] = self.provider_usage
        return newer

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
        body.update(self._newer())
        return body

    def digest(self) -> bytes:
        """Identity of the payload: equal digests mean an exact duplicate.

        Normalized first, so `Z` and `+00:00`, or an explicit default, do not make
        a retry look like a conflict. The newer token fields and `provider_usage` are
        appended only when present, so an event without them keeps the digest it had
        before they existed (replaying old traffic stays a no-op).
        """
        metadata = json.dumps(self.metadata, sort_keys=True, separators=(",", ":")) if self.metadata is not None else ""
        canonical = "\x1f".join((
            self.customer_id, self.event_id, self.model, str(self.occurred_at.timestamp()),
            str(self.input_tokens), str(self.cached_input_tokens), str(self.output_tokens),
            self.service_tier, self.region, self.cluster, metadata,
        ))
        if newer := self._newer():
            canonical += "\x1f" + json.dumps(newer, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an element was refused: the first rule's code and every field's messages."""

    reason: str
    errors: dict[str, list[str]]


def json_loads(raw: bytes | str):
    """`json.loads`, except that it never raises RecursionError.

    A document nested deeper than Python's decoder can follow (about 1,500 levels)
    is decoded again with every container deeper than DOCUMENT_DEPTH_MAX replaced by
    `null`: the element it sits in is then refused by the rule it breaks (metadata
    too deep, a field that must be a string, not an object), with the field named.
    Only that rare path pays for the scan.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        pass
    text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes | bytearray) else raw
    pieces, depth, kept_from = [], 0, 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("{", "["):
            depth += 1
            if depth == DOCUMENT_DEPTH_MAX + 1:
                pieces.append(text[kept_from:token.start()])
        elif bracket in ("}", "]"):
            if depth == DOCUMENT_DEPTH_MAX + 1:
                pieces.append("null")
                kept_from = token.end()
            depth -= 1
    pieces.append(text[kept_from:])
    try:
        return json.loads("".join(pieces))
    except RecursionError as exc:  # brackets the scan could not pair: not JSON anyway
        raise ValueError("nested too deeply to decode") from exc


def shown(value: str) -> str:
    """A string safe to echo in an error message: lone surrogates written as escapes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if UNSTORABLE.search(value) else value


def _unstorable(value: str) -> str | None:
    """The coded reason Postgres cannot store this string, if any."""
    if value.isascii():  # the common case, at a fraction of a regex search's cost
        if "\x00" not in value:
            return None
    elif (found := UNSTORABLE.search(value)) is None:
        return None
    elif found.group() != "\x00":
        return ("lone_surrogate:Must not contain a lone UTF-16 surrogate (\\ud800–\\udfff); "
                "it is not a Unicode character and Postgres cannot store it.")
    return "nul_character:Must not contain NUL (\\u0000); Postgres text and jsonb cannot store it."


def _path(keys: tuple, name: str = "metadata") -> str:
    return name + "".join(f"[{k}]" if isinstance(k, int) else f"[{json.dumps(k)}]" for k in keys)


def _stored_fault(stored: dict, name: str, bytes_max: int) -> str | None:
    """The first reason the object `name` cannot be stored, with where; None if it can.

    Iterative, so no depth makes it recurse; stops past METADATA_DEPTH_MAX levels and after
    `bytes_max` nodes (each takes at least a byte serialized), so a huge or deep object
    costs no more than a legal one before it is refused.
    """
    stack: list[tuple[object, int, tuple]] = [(stored, 1, ())]
    nodes = 0
    while stack:
        value, depth, keys = stack.pop()
        nodes += 1
        if nodes > bytes_max:
            return f"{name}_too_large:Must be at most {bytes_max} bytes serialized."
        if isinstance(value, dict | list):
            if depth > METADATA_DEPTH_MAX:
                return (f"{name}_too_deep:Must nest at most {METADATA_DEPTH_MAX} levels of objects and arrays; "
                        f"{_path(keys[:3], name)}... goes deeper.")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and (fault := _unstorable(key)):
                    code, _, message = fault.partition(":")
                    return f"{name}_{code}:{message} Found in a key under {_path(keys, name)}."
                stack.append((item, depth + 1, keys + (key,)))
        elif isinstance(value, str):
            if fault := _unstorable(value):
                code, _, message = fault.partition(":")
                return f"{name}_{code}:{message} Found at {_path(keys, name)}."
        elif isinstance(value, float) and not math.isfinite(value):
            return (f"{name}_not_finite:Numbers must be finite (jsonb has no NaN or Infinity); "
                    f"found at {_path(keys, name)}.")
    return None


def _stored_checked(stored: dict, name: str = "metadata", bytes_max: int = METADATA_BYTES_MAX) -> str | None:
    """Why the object `name` (metadata, provider_usage) is refused, if it is: size, depth,
    what Postgres cannot store.

    The serialized form, needed for the size anyway, clears the common case at C speed:
    with no escape, no NaN/Infinity and fewer brackets than METADATA_DEPTH_MAX it holds
    no NUL, no surrogate, nothing too deep. Anything else is walked (`_stored_fault`).
    """
    try:
        text = json.dumps(stored, separators=(",", ":"))
    except RecursionError:  # deeper than the encoder follows: the walk says where
        return _stored_fault(stored, name, bytes_max)
    suspect = ("\\u" in text or "NaN" in text or "Infinity" in text
               or text.count("{") + text.count("[") > METADATA_DEPTH_MAX)
    if suspect and (fault := _stored_fault(stored, name, bytes_max)):
        return fault
    if len(text.encode()) > bytes_max:
        return f"{name}_too_large:Must be at most {bytes_max} bytes serialized."
    return None


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
    if fault := _unstorable(value):
        errors.setdefault(field, []).append(f"{field}_{fault}")
    return value


def fields_known(obj: dict, allowed: frozenset[str], errors: dict, *, of: str = "") -> None:
    if unknown := obj.keys() - allowed:
        names = ", ".join(sorted(shown(str(name)) for name in unknown))
        errors["non_field_errors"] = [f"unknown_field:Unknown field(s){of}: {names}."]


def customer_known(obj: dict, catalog: Catalog, errors: dict) -> str:
    customer_id = _string(obj, "customer_id", 64, errors, required=True)
    if customer_id and "customer_id" not in errors and customer_id not in catalog.customers:
        errors["customer_id"] = [f"customer_unknown:No customer '{customer_id}'."]
    return customer_id


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


def _parts_checked(counts: dict[str, int], errors: dict) -> None:
    """The rules tying parts to totals (DESIGN.md §1), on counts that are each valid."""
    if counts["cached_input_tokens"] > counts["input_tokens"]:
        errors["cached_input_tokens"] = ["cached_exceeds_input:Must not exceed input_tokens."]
    elif (parts := sum(counts[name] for name in INPUT_PARTS)) > counts["input_tokens"]:
        errors["input_tokens"] = [
            f"input_parts_exceed_input:The parts of input_tokens ({' + '.join(INPUT_PARTS)} = {parts}) "
            f"must not exceed it ({counts['input_tokens']})."]
    if counts["audio_output_tokens"] > counts["output_tokens"]:
        errors["audio_output_tokens"] = ["audio_output_exceeds_output:Must not exceed output_tokens."]
    if counts["reasoning_tokens"] > counts["output_tokens"]:
        errors["reasoning_tokens"] = ["reasoning_exceeds_output:Must not exceed output_tokens."]


def _token_counts(obj: dict, errors: dict) -> tuple[dict[str, int], dict | None]:
    """The event's token fields, given or read from its `provider_usage`, and that object.

    Checked field by field, then the parts against their totals; a provider object is
    read by its format's adapter (metering/provider_usage.py), never alongside token fields.
    """
    provider_usage = obj.get("provider_usage")
    if provider_usage is not None:
        counts = dict.fromkeys(TOKEN_FIELDS, 0)
        if given := [name for name in TOKEN_FIELDS if name in obj]:
            errors["provider_usage"] = [f"provider_usage_with_token_fields:Send provider_usage or token fields, "
                                        f"not both ({', '.join(given)} given)."]
            return counts, None
        try:
            counts = token_fields(provider_usage)
        except UsageUnreadable as exc:
            errors["provider_usage"] = [f"{exc.reason}:{exc.message}"]
            return counts, None
        if fault := _stored_checked(provider_usage, "provider_usage", PROVIDER_USAGE_BYTES_MAX):
            errors["provider_usage"] = [fault]
            return counts, None
    else:
        counts = {name: _tokens(obj, name, errors, default=None if name in ("input_tokens", "output_tokens") else 0)
                  for name in TOKEN_FIELDS}
        if any(name in errors for name in TOKEN_FIELDS):
            return counts, None
    _parts_checked(counts, errors)
    return counts, provider_usage


def event_validate(obj, *, catalog: Catalog, rules: Rules) -> UsageEventIn | Invalid:
    """Check one element against every rule of DESIGN.md §1."""
    if not isinstance(obj, dict):
        return Invalid("not_an_object", {"non_field_errors": ["An event must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    fields_known(obj, FIELDS, errors)
    event_id = _string(obj, "event_id", 128, errors, required=True)
    customer_id = customer_known(obj, catalog, errors)
    model = _string(obj, "model", 128, errors, required=True)
    if model and "model" not in errors and model not in catalog.models:
        errors["model"] = [f"model_unknown:Model '{model}' is not in the catalog."]
    occurred_at = _timestamp(obj, rules, errors)
    counts, provider_usage = _token_counts(obj, errors)
    service_tier = obj.get("service_tier", "standard")
    if not isinstance(service_tier, str):
        errors["service_tier"] = ["service_tier_invalid:Must be a string naming a service tier of the catalog."]
    elif service_tier not in catalog.service_tiers:
        errors["service_tier"] = [f"service_tier_unknown:Service tier '{shown(service_tier)[:64]}' is not in the "
                                  f"catalog ({', '.join(sorted(catalog.service_tiers))})."]
    region = _string(obj, "region", 64, errors, required=False)
    cluster = _string(obj, "cluster", 64, errors, required=False)
    metadata = obj.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors["metadata"] = ["metadata_invalid:Must be a JSON object."]
        elif fault := _stored_checked(metadata):
            errors["metadata"] = [fault]
    if errors:
        return _invalid(errors)
    return UsageEventIn(
        event_id=event_id, customer_id=customer_id, model=model, occurred_at=occurred_at,
        service_tier=service_tier, region=region, cluster=cluster, metadata=metadata,
        provider_usage=provider_usage, **counts,
    )


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True):
    """The shape of a plain valid event, for `event_accept_fast`'s compiled decoder.

    Types only, and stricter than JSON: an int field takes only a JSON integer (never
    a float or a bool, as `_tokens`), a required field null is a failure, unknown fields
    are a failure. Duplicate keys keep the last value, as `json.loads` does."""

    event_id: str
    customer_id: str
    model: str
    timestamp: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_long_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    reasoning_tokens: int = 0
    service_tier: str = "standard"
    region: str | None = None
    cluster: str | None = None
    metadata: dict | None = None


class _WireProviderEvent(msgspec.Struct, forbid_unknown_fields=True):
    """`_WireEvent` with the provider's usage object in place of the token fields."""

    event_id: str
    customer_id: str
    model: str
    timestamp: str
    provider_usage: dict
    service_tier: str = "standard"
    region: str | None = None
    cluster: str | None = None
    metadata: dict | None = None


def _no_float(literal: str):
    """msgspec's hook for a number with a fraction or exponent inside provider_usage: usage
    objects count tokens in integers, so such an element is left to `event_validate`,
    which judges it (a literal like 1e400, not finite, is refused there)."""
    raise ValueError(f"{literal}: not an integer")


_WIRE_EVENT = msgspec.json.Decoder(_WireEvent)
_WIRE_PROVIDER_EVENT = msgspec.json.Decoder(_WireProviderEvent, float_hook=_no_float)


def _plainly_storable(stored: dict, bytes_max: int) -> bool:
    """A sufficient test that `_stored_checked` finds nothing wrong, at msgspec's speed, for
    an object decoded with `_no_float` (so holding no float): serialized as ASCII with no escape (so no NUL, no
    surrogate), no more brackets than levels allowed, within the size (the serialization
    `_stored_checked` measures is the same bytes for such an object)."""
    encoded = msgspec.json.encode(stored)
    return (encoded.isascii() and b"\\u" not in encoded and len(encoded) <= bytes_max
            and encoded.count(b"{") + encoded.count(b"[") <= METADATA_DEPTH_MAX)
_WIRE_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


def wire_elements(raw: bytes) -> list[msgspec.Raw] | None:
    """A JSON array's elements, each still encoded; None if the compiled decoder cannot
    split it (not an array, not strict UTF-8 JSON, ...): the caller then decodes with
    `json_loads`, which decides."""
    try:
        return _WIRE_ARRAY.decode(raw)
    except Exception:  # noqa: BLE001 -- any failure only means "take the authoritative path"
        return None


def event_accept_fast(raw, *, catalog: Catalog, rules: Rules) -> UsageEventIn | None:
    """The event in `raw` (one encoded JSON element) if it is a plain valid one, else None.

    An optimization of `event_validate` for the consumer's hot path, never a second
    authority: it accepts only events without metadata that pass every rule below, each
    the same test `event_validate` makes (a provider object read by the same adapter),
    and returns exactly what `event_validate` returns for them. Anything else, including everything it cannot decode, is None,
    and the caller decodes the element with `json_loads` and asks `event_validate`, which
    gives the verdict and the reason (tests/metering/test_steps.py holds the two
    paths to the same answers)."""
    try:
        wire = _WIRE_EVENT.decode(raw)
        provider_usage = None
        tokens = (wire.input_tokens, wire.cached_input_tokens, wire.output_tokens, wire.cache_write_tokens,
                  wire.cache_write_long_tokens, wire.audio_input_tokens, wire.audio_output_tokens, wire.reasoning_tokens)
    except Exception:  # noqa: BLE001 -- see wire_elements
        try:
            wire = _WIRE_PROVIDER_EVENT.decode(raw)
            counts = token_fields(wire.provider_usage)
        except Exception:  # noqa: BLE001 -- not decodable here, or refused by its adapter: the slow path says why
            return None
        provider_usage = wire.provider_usage
        if not _plainly_storable(provider_usage, PROVIDER_USAGE_BYTES_MAX):
            return None
        tokens = tuple(counts[name] for name in TOKEN_FIELDS)
    input_tokens, cached, output_tokens, write, write_long, audio_in, audio_out, reasoning = tokens
    region, cluster = wire.region or "", wire.cluster or ""
    event_id, customer_id, model, service_tier = wire.event_id, wire.customer_id, wire.model, wire.service_tier
    parts = (cached, write, write_long, audio_in)
    if not (
        wire.metadata is None
        and customer_id in catalog.customers and 0 < len(customer_id) <= 64
        and model in catalog.models and 0 < len(model) <= 128
        and 0 < len(event_id) <= 128 and len(region) <= 64 and len(cluster) <= 64
        and service_tier in catalog.service_tiers
        and 0 <= input_tokens <= TOKENS_MAX and 0 <= output_tokens <= TOKENS_MAX
        and min(parts) >= 0 and sum(parts) <= input_tokens
        and 0 <= audio_out <= output_tokens and 0 <= reasoning <= output_tokens
        and not (_unstorable(event_id) or _unstorable(customer_id) or _unstorable(model)
                 or _unstorable(region) or _unstorable(cluster))
        and RFC3339.match(wire.timestamp)
    ):
        return None
    try:
        occurred_at = datetime.fromisoformat(wire.timestamp)
    except ValueError:
        return None
    if not rules.not_before <= occurred_at <= rules.not_after:
        return None
    return UsageEventIn(
        event_id=event_id, customer_id=customer_id, model=model, occurred_at=occurred_at,
        input_tokens=input_tokens, cached_input_tokens=cached, output_tokens=output_tokens,
        service_tier=service_tier, region=region, cluster=cluster, metadata=None,
        cache_write_tokens=write, cache_write_long_tokens=write_long, audio_input_tokens=audio_in,
        audio_output_tokens=audio_out, reasoning_tokens=reasoning, provider_usage=provider_usage,
    )


def _invalid(coded: dict[str, list[str]]) -> Invalid:
    """Split 'code:message' entries into the first code and readable messages."""
    first_code = next(iter(coded.values()))[0].partition(":")[0]
    return Invalid(first_code, {f: [m.partition(":")[2] for m in msgs] for f, msgs in coded.items()})
