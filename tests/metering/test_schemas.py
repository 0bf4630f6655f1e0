"""Every rule of DESIGN.md §1, on the pure validator."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from metering.schemas import (
    DOCUMENT_DEPTH_MAX, METADATA_DEPTH_MAX, Catalog, Invalid, Rules, UsageEventIn, event_validate, json_loads,
)
from tests.metering.factories import EXAMPLE, nested

CATALOG = Catalog(customers=frozenset({"acme"}), models=frozenset({"gpt-5.4"}))
ARRIVED = datetime(2026, 11, 3, 14, 10, tzinfo=UTC)
RULES = Rules(arrived_at=ARRIVED, lateness=timedelta(days=35))


def validate(**overrides):
    body = {**EXAMPLE, **overrides}
    body = {k: v for k, v in body.items() if v is not ...}
    return event_validate(body, catalog=CATALOG, rules=RULES)


def test_the_example_is_valid_and_normalized():
    verdict = validate(cached_input_tokens=..., service_tier=...)

    assert isinstance(verdict, UsageEventIn)
    assert verdict.cached_input_tokens == 0
    assert verdict.service_tier == "standard"
    assert verdict.occurred_at == datetime(2026, 11, 3, 14, 7, 31, 218000, tzinfo=UTC)


NO_TOKENS = {"input_tokens": ..., "cached_input_tokens": ..., "output_tokens": ...}
BROKEN = [
    ("event_id", {"event_id": ...}, "event_id_required"),
    ("event_id", {"event_id": ""}, "event_id_length"),
    ("event_id", {"event_id": "x" * 129}, "event_id_length"),
    ("event_id", {"event_id": 17}, "event_id_invalid"),
    ("customer_id", {"customer_id": "x" * 65}, "customer_id_length"),
    ("customer_id", {"customer_id": "initech"}, "customer_unknown"),
    ("model", {"model": "gpt-9"}, "model_unknown"),
    ("model", {"model": ...}, "model_required"),
    ("timestamp", {"timestamp": "2026-11-03T14:07:31"}, "timestamp_invalid"),
    ("timestamp", {"timestamp": "2026-11-03"}, "timestamp_invalid"),
    ("timestamp", {"timestamp": "2026-02-30T10:00:00Z"}, "timestamp_invalid"),
    ("timestamp", {"timestamp": 1762178851}, "timestamp_invalid"),
    ("timestamp", {"timestamp": "2026-11-03T14:16:00Z"}, "timestamp_in_future"),
    ("timestamp", {"timestamp": "2026-09-28T14:00:00Z"}, "timestamp_too_old"),
    ("input_tokens", {"input_tokens": -1}, "input_tokens_out_of_range"),
    ("input_tokens", {"input_tokens": 1.5}, "input_tokens_invalid"),
    ("input_tokens", {"input_tokens": True}, "input_tokens_invalid"),
    ("input_tokens", {"input_tokens": ...}, "input_tokens_required"),
    ("output_tokens", {"output_tokens": "12"}, "output_tokens_invalid"),
    ("output_tokens", {"output_tokens": 10**13}, "output_tokens_out_of_range"),
    ("cached_input_tokens", {"cached_input_tokens": -2}, "cached_input_tokens_out_of_range"),
    ("cached_input_tokens", {"cached_input_tokens": 1831}, "cached_exceeds_input"),
    ("service_tier", {"service_tier": "premium"}, "service_tier_unknown"),
    ("service_tier", {"service_tier": 7}, "service_tier_invalid"),
    # The token classes of the provider-usage issue: each part within its total.
    ("cache_write_tokens", {"cache_write_tokens": -1}, "cache_write_tokens_out_of_range"),
    ("cache_write_long_tokens", {"cache_write_long_tokens": "5"}, "cache_write_long_tokens_invalid"),
    ("audio_input_tokens", {"audio_input_tokens": 1.0}, "audio_input_tokens_invalid"),
    ("audio_output_tokens", {"audio_output_tokens": None}, "audio_output_tokens_required"),
    ("reasoning_tokens", {"reasoning_tokens": 10**13}, "reasoning_tokens_out_of_range"),
    ("input_tokens", {"cache_write_tokens": 500, "cache_write_long_tokens": 300, "audio_input_tokens": 7},
     "input_parts_exceed_input"),  # 1024 cached + 807 > 1830
    ("audio_output_tokens", {"audio_output_tokens": 413}, "audio_output_exceeds_output"),
    ("reasoning_tokens", {"reasoning_tokens": 413}, "reasoning_exceeds_output"),
    # A provider's usage object, read by its adapter, in place of the token fields.
    ("provider_usage", {"provider_usage": {"format": "openai.chat", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}},
     "provider_usage_with_token_fields"),
    ("provider_usage", {**NO_TOKENS, "provider_usage": {"format": "mistral", "usage": {}}},
     "provider_usage_format_unknown"),
    ("provider_usage", {**NO_TOKENS, "provider_usage": {"format": "openai.chat", "usage": {"prompt_tokens": "10"}}},
     "provider_usage_invalid"),
    ("provider_usage", {**NO_TOKENS, "provider_usage": {"format": "anthropic.messages", "usage": [1]}},
     "provider_usage_invalid"),
    ("provider_usage", {**NO_TOKENS, "provider_usage": {"format": "openai.chat", "usage": {
        "prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 11}}}},
     "provider_usage_inconsistent"),
    ("provider_usage", {**NO_TOKENS, "provider_usage": {"format": "openai.chat", "usage": {
        "prompt_tokens": 10, "completion_tokens": 2, "note": "a\u0000b"}}}, "provider_usage_nul_character"),
    ("region", {"region": 5}, "region_invalid"),
    ("cluster", {"cluster": "c" * 65}, "cluster_length"),
    ("metadata", {"metadata": [1, 2]}, "metadata_invalid"),
    ("metadata", {"metadata": {"blob": "x" * 4100}}, "metadata_too_large"),
    ("non_field_errors", {"tokens": 5}, "unknown_field"),
    # What Postgres cannot store is refused here, not by a failed write: NUL in text and
    # jsonb, lone surrogates (not encodable to UTF-8), NaN/Infinity in jsonb, deep nesting.
    ("event_id", {"event_id": "evt-\u0000-1"}, "event_id_nul_character"),
    ("event_id", {"event_id": "evt-\ud800"}, "event_id_lone_surrogate"),
    ("customer_id", {"customer_id": "ac\u0000me"}, "customer_id_nul_character"),
    ("model", {"model": "gpt-5.4\udc00"}, "model_lone_surrogate"),
    ("region", {"region": "us-east\u0000"}, "region_nul_character"),
    ("cluster", {"cluster": "\udfff"}, "cluster_lone_surrogate"),
    ("service_tier", {"service_tier": "standard\u0000"}, "service_tier_unknown"),
    ("metadata", {"metadata": {"request\u0000id": "gw"}}, "metadata_nul_character"),
    ("metadata", {"metadata": {"a": [{"b": "v\ud83d"}]}}, "metadata_lone_surrogate"),
    ("metadata", {"metadata": {"ratio": float("nan")}}, "metadata_not_finite"),
    ("metadata", {"metadata": nested(METADATA_DEPTH_MAX + 1)}, "metadata_too_deep"),
]


@pytest.mark.parametrize(("field", "overrides", "reason"), BROKEN, ids=[b[2] + ":" + b[0] for b in BROKEN])
def test_each_rule_names_its_field(field, overrides, reason):
    verdict = validate(**overrides)

    assert isinstance(verdict, Invalid)
    assert verdict.reason == reason
    assert field in verdict.errors and verdict.errors[field][0]


def test_the_lateness_limit_and_future_skew_are_judged_against_arrival():
    limit = (ARRIVED - timedelta(days=35)).isoformat()
    skew = (ARRIVED + timedelta(minutes=5)).isoformat()

    assert isinstance(validate(timestamp=limit), UsageEventIn)
    assert isinstance(validate(timestamp=skew), UsageEventIn)


def test_a_non_object_is_refused():
    verdict = event_validate([1], catalog=CATALOG, rules=RULES)

    assert isinstance(verdict, Invalid) and verdict.reason == "not_an_object"


def test_digest_ignores_spelling_but_not_content():
    base = validate()
    respelled = validate(timestamp="2026-11-03T15:07:31.218+01:00", metadata=json.loads('{"request_id": "gw-7f3a"}'))
    changed = validate(output_tokens=413)

    assert base.digest() == respelled.digest()
    assert base.digest() != changed.digest()
    assert validate(cached_input_tokens=0, input_tokens=5).digest() == validate(cached_input_tokens=..., input_tokens=5).digest()


def test_storable_unicode_and_the_deepest_metadata_allowed_are_valid():
    verdict = validate(event_id="req-😀-\u00e9", metadata={"emoji": json.loads('"\\ud83d\\ude00"'),
                                                             "deep": nested(METADATA_DEPTH_MAX - 1)})

    assert isinstance(verdict, UsageEventIn)


def test_a_nul_in_metadata_is_refused_with_where_it_is():
    in_value = validate(metadata={"a": [{"b": "v\u0000"}]})
    in_key = validate(metadata={"a": {"k\u0000": 1}})

    assert in_value.errors["metadata"][0].endswith('Found at metadata["a"][0]["b"].')
    assert in_key.errors["metadata"][0].endswith('Found in a key under metadata["a"].')


def test_an_echoed_unknown_field_name_is_shown_escaped():
    verdict = validate(**{"x\ud800": 1})

    assert verdict.errors["non_field_errors"] == ["Unknown field(s): x\\ud800."]
    json.dumps(verdict.errors, ensure_ascii=False).encode()  # renders: no lone surrogate left


@pytest.mark.parametrize("depth", [METADATA_DEPTH_MAX + 1, 2_000, 10_000, 100_000])
def test_metadata_of_any_depth_decodes_and_is_refused_as_too_deep(depth):
    raw = json.dumps({**EXAMPLE, "metadata": None})[:-len("null}")] + '{"a":' * depth + "1" + "}" * depth + "}"

    verdict = event_validate(json_loads(raw.encode()), catalog=CATALOG, rules=RULES)

    assert isinstance(verdict, Invalid)
    assert (verdict.reason, list(verdict.errors)) == ("metadata_too_deep", ["metadata"])


def test_json_loads_cuts_only_what_python_cannot_decode_and_never_recurses():
    tricky = r'"]}\"[{ \\"'  # brackets and escaped quotes inside a string do not nest
    deep = '{"s": ' + tricky + ', "deep": ' + "[" * 10_000 + "]" * 10_000 + ', "t": ' + tricky + "}"

    decoded = json_loads(deep)

    assert decoded["s"] == decoded["t"] == json.loads(tricky)
    assert depth_of(decoded["deep"]) == DOCUMENT_DEPTH_MAX - 1  # the object holding it is level 1
    for broken in ("[" * 10_000, "[" * 10_000 + '"\\"\\"' * 10_000, "{" * 5_000 + "]" * 6_000, '{"a":' * 3_000):
        with pytest.raises(ValueError):
            json_loads(broken)


def depth_of(value) -> int:
    depth = 0
    while isinstance(value, list | dict) and value:
        value, depth = (value[0] if isinstance(value, list) else next(iter(value.values()))), depth + 1
    return depth + isinstance(value, list | dict)


# --- token classes and provider usage (DESIGN.md §1, the provider-usage issue) ---------

# Digests of the example event as the validator computed them before the newer token
# fields existed (metering/schemas.py at 369b15e): old traffic replayed must keep them.
DIGEST_BEFORE_TOKEN_CLASSES = "b58faae4db67226f5219a1f76aba4aa7"
DIGEST_BEFORE_WITHOUT_METADATA = "f82fe14b9ff6f110261f30c51bec7515"


def test_an_event_without_the_newer_fields_keeps_its_digest_and_its_payload():
    verdict = validate()
    bare = validate(metadata=...)
    explicit_zeros = validate(cache_write_tokens=0, cache_write_long_tokens=0, audio_input_tokens=0,
                              audio_output_tokens=0, reasoning_tokens=0)

    assert verdict.digest().hex() == DIGEST_BEFORE_TOKEN_CLASSES
    assert bare.digest().hex() == DIGEST_BEFORE_WITHOUT_METADATA
    assert explicit_zeros.digest() == verdict.digest()
    assert set(verdict.payload()) == set(EXAMPLE)


def test_the_newer_fields_are_kept_and_change_the_identity():
    verdict = validate(cache_write_tokens=300, cache_write_long_tokens=200, audio_input_tokens=100,
                       audio_output_tokens=12, reasoning_tokens=250)

    assert (verdict.cache_write_tokens, verdict.cache_write_long_tokens, verdict.audio_input_tokens,
            verdict.audio_output_tokens, verdict.reasoning_tokens) == (300, 200, 100, 12, 250)
    assert verdict.payload()["reasoning_tokens"] == 250 and "provider_usage" not in verdict.payload()
    assert verdict.digest() != validate().digest()
    assert verdict.digest() != validate(cache_write_tokens=300, cache_write_long_tokens=200, audio_input_tokens=100,
                                        audio_output_tokens=12, reasoning_tokens=251).digest()


def test_parts_may_add_up_to_exactly_their_totals():
    verdict = validate(input_tokens=1830, cached_input_tokens=1024, cache_write_tokens=500,
                       cache_write_long_tokens=300, audio_input_tokens=6, audio_output_tokens=412, reasoning_tokens=412)

    assert isinstance(verdict, UsageEventIn)


def test_a_provider_usage_object_gives_the_token_fields_and_is_kept():
    usage = {"input_tokens": 20, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 3000,
             "output_tokens": 180, "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500}}
    provider_usage = {"format": "anthropic.messages", "usage": usage}

    verdict = validate(**NO_TOKENS, provider_usage=provider_usage)

    assert (verdict.input_tokens, verdict.cached_input_tokens, verdict.cache_write_tokens,
            verdict.cache_write_long_tokens, verdict.output_tokens) == (4520, 3000, 1000, 500, 180)
    assert verdict.provider_usage == provider_usage and verdict.payload()["provider_usage"] == provider_usage
    # The same object again is the same event; another object with the same counts is not.
    assert validate(**NO_TOKENS, provider_usage=json.loads(json.dumps(provider_usage))).digest() == verdict.digest()
    other = {"format": "anthropic.messages", "usage": {**usage, "service_tier": "standard"}}
    assert validate(**NO_TOKENS, provider_usage=other).digest() != verdict.digest()


def test_service_tiers_come_from_the_catalog():
    catalog = Catalog(customers=frozenset({"acme"}), models=frozenset({"gpt-5.4"}),
                      service_tiers=frozenset({"standard", "scale"}))
    body = {**EXAMPLE, "service_tier": "scale"}

    assert isinstance(event_validate(body, catalog=catalog, rules=RULES), UsageEventIn)
    assert event_validate({**body, "service_tier": "flex"}, catalog=catalog, rules=RULES).reason == "service_tier_unknown"
    assert isinstance(validate(service_tier="flex"), UsageEventIn)
    assert isinstance(validate(service_tier="provisioned"), UsageEventIn)
