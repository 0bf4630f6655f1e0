"""record() refuses at once, on the caller's thread, what can never be a valid event."""

from datetime import UTC, datetime

import pytest

from gateway_client import InvalidEvent, UsageClient
from metering.provider_usage import UsageUnreadable


@pytest.fixture
def client(stub_api):
    client = UsageClient(rest_url=stub_api.url, api_key="k", flush_interval_s=3600)
    yield client
    client.close(timeout_s=0)


BASE = {"customer_id": "acme", "model": "gpt-5.4"}


@pytest.mark.parametrize("provider_usage", [
    {"format": "openai.chat", "usage": {"prompt_tokens": "many", "completion_tokens": 1}},
    {"format": "openai.chat", "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                        "prompt_tokens_details": {"cached_tokens": 11}}},
    {"format": "anthropic.messages", "usage": {"input_tokens": -1, "output_tokens": 3}},
    {"format": "gemini", "usage": {"promptTokenCount": 5, "cachedContentTokenCount": 9, "candidatesTokenCount": 1}},
    {"format": "mistral.chat", "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    {"format": "openai.chat"},
])
def test_an_unreadable_provider_usage_raises_at_record(client, provider_usage):
    with pytest.raises(UsageUnreadable):
        client.record(**BASE, provider_usage=provider_usage)

    assert (client.stats.recorded, client.stats.buffered) == (0, 0)


@pytest.mark.parametrize("fields", [
    {"input_tokens": 10},  # no output_tokens
    {"input_tokens": 10, "output_tokens": -1},
    {"input_tokens": 10, "output_tokens": True},
    {"input_tokens": 10.0, "output_tokens": 1},
    {"input_tokens": 10, "output_tokens": 1, "cached_input_tokens": 11},
    {"input_tokens": 10, "output_tokens": 1, "cached_input_tokens": 6, "cache_write_tokens": 5},
    {"input_tokens": 10, "output_tokens": 1, "reasoning_tokens": 2},
    {"input_tokens": 10, "output_tokens": 1, "provider_usage": {"format": "openai.chat", "usage": {
        "prompt_tokens": 10, "completion_tokens": 1}}},  # both kinds of usage
    {"input_tokens": 1, "output_tokens": 1, "customer_id": ""},
    {"input_tokens": 1, "output_tokens": 1, "event_id": "x" * 129},
    {"input_tokens": 1, "output_tokens": 1, "timestamp": datetime(2026, 11, 3, 14, 7)},  # naive
    {"input_tokens": 1, "output_tokens": 1, "timestamp": "yesterday"},
    {"input_tokens": 1, "output_tokens": 1, "metadata": {"blob": "x" * 5000}},
    {"input_tokens": 1, "output_tokens": 1, "metadata": {"ratio": float("nan")}},
])
def test_an_impossible_event_raises_invalid_event(client, fields):
    with pytest.raises(InvalidEvent):
        client.record(**{**BASE, **fields})

    assert client.stats.recorded == 0


def test_the_event_on_the_wire(client, stub_api):
    from tests.gateway_client.conftest import accept_all

    stub_api.default = (202, {}, accept_all)
    plain = client.record(**BASE, request_id="req-7", timestamp=datetime(2026, 11, 3, 14, 7, 31, 218000, tzinfo=UTC),
                          input_tokens=1830, cached_input_tokens=1024, output_tokens=412, region="us-east",
                          cluster="iad-h100-a", metadata={"request_id": "gw-7f3a"})
    newer = client.record(**BASE, usage={"input_tokens": 100, "output_tokens": 50, "cache_write_tokens": 30,
                                         "reasoning_tokens": 20}, service_tier="batch")
    mapped = client.record(**BASE, provider_usage={"format": "anthropic.messages", "usage": {
        "input_tokens": 12, "cache_read_input_tokens": 1024, "output_tokens": 50}})

    assert client.flush(timeout_s=10)

    first, second, third = stub_api.events_posted()
    assert first == {"event_id": "req-7", "customer_id": "acme", "model": "gpt-5.4",
                     "timestamp": "2026-11-03T14:07:31.218Z", "input_tokens": 1830, "cached_input_tokens": 1024,
                     "output_tokens": 412, "service_tier": "standard", "region": "us-east", "cluster": "iad-h100-a",
                     "metadata": {"request_id": "gw-7f3a"}}
    assert (plain, second["event_id"], third["event_id"]) == ("req-7", newer, mapped)
    # newer token fields only when non-zero, so older events keep their meaning and digest
    assert {k: v for k, v in second.items() if k.endswith("_tokens")} == {
        "input_tokens": 100, "output_tokens": 50, "cache_write_tokens": 30, "reasoning_tokens": 20}
    assert second["service_tier"] == "batch"
    assert third["provider_usage"] == {"format": "anthropic.messages", "usage": {
        "input_tokens": 12, "cache_read_input_tokens": 1024, "output_tokens": 50}}
    assert not any(k.endswith("_tokens") for k in third)
