"""Events carrying the provider's usage object reach the ledger, mapped by the server
with the same adapters, over Kafka and over REST."""

import pytest

from gateway_client import UsageClient
from metering.models import UsageEvent
from metering.provider_usage import token_fields

pytestmark = pytest.mark.django_db(transaction=True)
ANTHROPIC = {"format": "anthropic.messages", "usage": {
    "input_tokens": 12, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 300, "output_tokens": 50}}
OPENAI = {"format": "openai.chat", "usage": {
    "prompt_tokens": 1830, "completion_tokens": 412, "prompt_tokens_details": {"cached_tokens": 1024},
    "completion_tokens_details": {"reasoning_tokens": 128}}}


def assert_in_ledger(event_id: str, provider_usage: dict) -> None:
    stored = UsageEvent.objects.get(event_id=event_id)
    expected = token_fields(provider_usage)
    assert {name: getattr(stored, name) for name in expected} == expected
    assert stored.provider_usage == provider_usage


def test_over_kafka(catalog, topics, drain, kafka_bootstrap):
    with UsageClient(bootstrap_servers=kafka_bootstrap, topic=topics["usage"]) as client:
        ids = [client.record(customer_id="acme", model="gpt-5.4", provider_usage=usage)
               for usage in (ANTHROPIC, OPENAI)]

    drain()

    assert_in_ledger(ids[0], ANTHROPIC)
    assert_in_ledger(ids[1], OPENAI)


def test_over_rest(catalog, topics, drain, ingest_key, live_server, rest_producer_fresh):
    with UsageClient(rest_url=f"{live_server.url}/api/v1", api_key=ingest_key) as client:
        event_id = client.record(customer_id="globex", model="gpt-5.4", provider_usage=ANTHROPIC)

    drain()

    assert (client.stats.sent_rest, client.stats.rejected) == (1, 0)
    assert_in_ledger(event_id, ANTHROPIC)
