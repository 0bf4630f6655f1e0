"""The consumer's pure steps on what a producer can put in a record: nothing makes
`check` raise, and every rejection can be serialized as it will be stored."""

import json
from datetime import UTC, datetime, timedelta

from kafka.consumer.fetcher import ConsumerRecord

from metering.consumer import steps
from metering.consumer.steps import bounded, check
from metering.schemas import DOCUMENT_DEPTH_MAX, Catalog
from tests.metering.factories import EXAMPLE

NOW = datetime(2026, 11, 3, 14, 10, tzinfo=UTC)
CATALOG = Catalog(customers=frozenset({"acme"}), models=frozenset({"gpt-5.4"}))


def record(value: bytes | None, *, offset: int = 0, timestamp_ms: int | None = None) -> ConsumerRecord:
    timestamp_ms = int(NOW.timestamp() * 1000) if timestamp_ms is None else timestamp_ms
    return ConsumerRecord(topic="usage", partition=0, leader_epoch=-1, offset=offset, timestamp=timestamp_ms,
                          timestamp_type=0, key=b"acme", value=value, headers=[], checksum=None,
                          serialized_key_size=4, serialized_value_size=len(value or b""), serialized_header_size=-1)


def checked(*values: bytes | None, **kwargs):
    records = [record(v, offset=i, **kwargs) for i, v in enumerate(values)]
    return check(records, catalog=CATALOG, lateness=timedelta(days=35), now=NOW)


def test_a_message_nested_past_what_json_decodes_is_refused_for_its_metadata():
    head = json.dumps({**EXAMPLE, "metadata": None})[:-len("null}")]
    deep_metadata = (head + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}").encode()
    deep_array = ("[" * 10_000 + "]" * 10_000).encode()

    result = checked(deep_metadata, deep_array, b"[" * 10_000)

    assert result.accepted == []
    assert [(r.kind, r.reason) for r in result.rejected] == [
        ("invalid", "metadata_too_deep"), ("invalid", "not_an_object"), ("undecodable", "undecodable_json")]
    assert result.rejected[0].errors.keys() == {"metadata"}
    for rejection in result.rejected:
        json.loads(rejection.dlq_value())  # serializes: the payload was cut, not kept 10,000 deep


def test_a_rejected_element_keeps_its_payload_cut_to_the_document_depth():
    deep = 1
    for _ in range(1_200):  # decodable by json, deeper than Django and Postgres should be asked to follow
        deep = [deep]
    body = {**EXAMPLE, "event_id": "e-1", "unknown": deep}

    result = checked(json.dumps(body).encode())

    rejection = result.rejected[0]
    assert rejection.reason == "unknown_field" and rejection.payload["event_id"] == "e-1"
    cut = rejection.payload["unknown"]
    for _ in range(DOCUMENT_DEPTH_MAX - 1):
        cut = cut[0]
    assert cut is None


def test_bounded_keeps_shallow_values_as_they_are():
    value = {"a": [1, {"b": None, "c": "x"}], "d": 2.5}

    assert bounded(value) == value and bounded(value) is not value


def test_a_record_timestamp_past_year_9999_does_not_stop_the_consumer():
    result = checked(json.dumps({**EXAMPLE, "timestamp": NOW.isoformat()}).encode(), timestamp_ms=2**62)

    assert len(result.accepted) == 1 and result.accepted[0].received_at == NOW


def _provider_objects() -> list:
    """Provider usage objects on either side of the adapters' and the storability rules."""
    chat = {"prompt_tokens": 30, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 10}}
    padded = lambda n: {"format": "openai.chat", "usage": {**chat, "pad": "x" * n}}  # noqa: E731
    size = len(json.dumps(padded(0), separators=(",", ":")))
    nest: object = 1
    for _ in range(30):  # provider_usage, usage, then 30: the deepest allowed; one more is too deep
        nest = {"n": nest}
    return [
        {"format": "openai.chat", "usage": chat}, {"format": "anthropic.messages", "usage": {
            "input_tokens": 3, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 7, "output_tokens": 2}},
        {"format": "gemini", "usage": {"promptTokenCount": 9, "candidatesTokenCount": 1, "thoughtsTokenCount": 4}},
        {"format": "openai.chat", "usage": {**chat, "prompt_tokens": 9}}, {"format": "mistral", "usage": chat},
        {"format": "openai.chat", "usage": {**chat, "note": "a\x00b"}}, {"format": "openai.chat", "usage": {**chat, "x": 1e300}},
        {"format": "openai.chat", "usage": {**chat, "note": "é"}}, {"format": "openai.chat", "usage": {**chat, "n": nest}},
        {"format": "openai.chat", "usage": {**chat, "n": {"m": nest}}}, {"format": "openai.chat", "usage": {**chat, "p": 0.5}},
        padded(8192 - size), padded(8193 - size), "usage", None,
    ]


def _edge_documents() -> list[bytes]:
    """Events on either side of every rule, and what a strict decoder and json differ on."""
    base = {**EXAMPLE, "timestamp": NOW.isoformat()}
    base.pop("metadata")
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    untokened = {k: v for k, v in base.items() if not k.endswith("_tokens")}
    variants = [
        base, {**base, "metadata": None}, {**base, "metadata": {"a": 1}}, {**base, "metadata": {"d": deep}},
        {**base, "metadata": "x"}, {**base, "cached_input_tokens": None}, {**base, "cached_input_tokens": 10**6},
        {**base, "input_tokens": 5.0}, {**base, "input_tokens": True}, {**base, "output_tokens": 10**12 + 1},
        {**base, "input_tokens": 10**30}, {**base, "region": None}, {**base, "region": "x" * 65},
        {**base, "cluster": "a\x00"}, {**base, "event_id": "\ud800"}, {**base, "event_id": ""},
        {**base, "event_id": "é" * 128}, {**base, "event_id": "é" * 129}, {**base, "service_tier": None},
        {**base, "service_tier": "flex"}, {**base, "extra": 1}, {**base, "timestamp": "2026-11-03T14:00:00"},
        {**base, "timestamp": (NOW - timedelta(days=36)).isoformat()}, {**base, "timestamp": "2026-02-30T00:00:00Z"},
        {**base, "timestamp": (NOW + timedelta(minutes=6)).isoformat()}, {**base, "customer_id": "nobody"},
        {**base, "model": ""}, {**base, "service_tier": "premium"}, {**base, "service_tier": 3},
        {**base, "cache_write_tokens": 400, "cache_write_long_tokens": 406, "audio_input_tokens": 0},
        {**base, "cache_write_tokens": 400, "cache_write_long_tokens": 407}, {**base, "audio_input_tokens": -1},
        {**base, "audio_output_tokens": 412}, {**base, "audio_output_tokens": 413}, {**base, "reasoning_tokens": 412},
        {**base, "reasoning_tokens": 413}, {**base, "reasoning_tokens": 1.0}, {**base, "cache_write_tokens": None},
        *({**untokened, "provider_usage": provider_usage} for provider_usage in _provider_objects()),
        {**untokened, "provider_usage": _provider_objects()[0], "metadata": {"a": 1}},
        {**base, "provider_usage": _provider_objects()[0]},
        5, None, [], "s",
    ]
    documents = [json.dumps(v).encode() for v in variants]
    infinite = json.dumps({**untokened, "provider_usage": {"format": "openai.chat", "usage": {
        "prompt_tokens": 3, "completion_tokens": 1, "x": 1e300}}}).encode().replace(b"1e+300", b"1e400")
    assert b"1e400" in infinite
    plain = documents[0]
    return documents + [
        b'{"event_id":"first",' + plain[1:],  # a duplicate key: the last one counts
        b"\xef\xbb\xbf" + plain, b"[" * 3000 + b"]" * 3000, b'{"input_tokens":NaN}', b'{"region":"\xed\xa0\x80"}',
        infinite,
    ]


def test_the_compiled_path_gives_the_verdicts_of_event_validate(monkeypatch):
    documents = _edge_documents()
    messages = documents + [b"[" + b",".join(documents[i:i + 4]) + b"]" for i in range(len(documents))] + [
        b"[]", b" [" + documents[0] + b"]", b"[" + b",".join([documents[0]] * 1001) + b"]",
        b'[{"input_tokens":1e400}]', b"[" + documents[0] + b',{"x":"\xed\xa0\x80"}]',
    ]
    records = [record(m, offset=i) for i, m in enumerate(messages)]
    records += [r._replace(key=b"other", offset=r.offset + len(records)) for r in records]

    def verdicts():
        result = check(records, catalog=CATALOG, lateness=timedelta(days=35), now=NOW)
        return ([(a.event, a.source) for a in result.accepted],
                [(r.reason, r.errors, r.source, json.dumps(r.payload), r.raw) for r in result.rejected])

    compiled = verdicts()
    monkeypatch.setattr(steps, "_check_fast", lambda record, **kwargs: False)
    authoritative = verdicts()

    assert compiled == authoritative
    assert len(compiled[0]) > 10 and len(compiled[1]) > 100
