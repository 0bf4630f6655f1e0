"""The REST fallback: what the API's answers mean to the client."""

import json

import pytest

from gateway_client import UsageClient
from tests.gateway_client.conftest import accept_all, ledger_of


@pytest.mark.django_db(transaction=True)
def test_rejected_events_are_logged_counted_and_not_retried(catalog, topics, drain, ingest_key, live_server,
                                                            rest_producer_fresh, caplog):
    client = UsageClient(rest_url=f"{live_server.url}/api/v1", api_key=ingest_key, flush_interval_s=3600)
    good = [client.record(customer_id=c, model="gpt-5.4", input_tokens=10, output_tokens=2) for c in ("acme", "globex")]
    unknown_model = client.record(customer_id="acme", model="gpt-unknown", input_tokens=10, output_tokens=2)
    assert client.flush(timeout_s=10)  # 202 for acme's batch with one rejected element
    after_202 = client.stats
    unknown_customer = client.record(customer_id="nobody", model="gpt-5.4", input_tokens=1, output_tokens=1)
    assert client.flush(timeout_s=10)  # 422: none accepted
    client.close()
    drain()

    assert (after_202.sent_rest, after_202.rejected, after_202.retries) == (2, 1, 0)
    assert (client.stats.sent_rest, client.stats.rejected, client.stats.retries, client.stats.buffered) == (2, 2, 0, 0)
    assert f"usage event {unknown_model} of acme rejected by the API, not retried" in caplog.text
    assert "is not in the catalog" in caplog.text
    assert f"usage event {unknown_customer} of nobody rejected" in caplog.text
    assert sorted(ledger_of([*good, unknown_model])["appended"]) == sorted(good)


def test_throttled_and_failed_requests_are_retried_with_the_same_bytes(stub_api):
    stub_api.script = [(429, {"Retry-After": "1"}, {"title": "Too Many Requests", "status": 429}),
                       (503, {}, {"title": "Service Unavailable", "status": 503}),
                       (202, {}, accept_all)]
    client = UsageClient(rest_url=stub_api.url, api_key="tl_gateway_key", flush_interval_s=3600, retry_backoff_s=0.05)
    event_ids = [client.record(customer_id="acme", model="gpt-5.4", input_tokens=3, output_tokens=1) for _ in range(3)]

    delivered = client.flush(timeout_s=10)
    client.close()

    assert delivered
    assert (client.stats.sent_rest, client.stats.retries, client.stats.buffered) == (3, 2, 0)
    (t429, body, headers), (t503, _, _), _ = stub_api.requests
    assert len({body for _, body, _ in stub_api.requests}) == 1  # every attempt the same bytes
    assert [e["event_id"] for e in json.loads(body)["events"]] == event_ids
    assert t503 - t429 >= 1.0  # Retry-After honoured
    assert headers["Authorization"] == "Bearer tl_gateway_key"


def test_a_batch_too_large_for_the_server_is_split_and_a_single_unreadable_event_settled(stub_api, caplog):
    stub_api.script = [(413, {}, {"title": "Payload Too Large", "status": 413}), (202, {}, accept_all),
                       (400, {}, {"title": "Bad Request", "status": 400}),
                       (400, {}, {"title": "Bad Request", "status": 400, "detail": "unreadable"}),
                       (202, {}, accept_all)]
    client = UsageClient(rest_url=stub_api.url, api_key="k", flush_interval_s=3600)
    event_ids = [client.record(customer_id="acme", model="gpt-5.4", input_tokens=3, output_tokens=1) for _ in range(3)]

    assert client.flush(timeout_s=10)
    client.close()

    sent = [[e["event_id"] for e in json.loads(body)["events"]] for _, body, _ in stub_api.requests]
    assert sent == [event_ids, event_ids[:1], event_ids[1:], event_ids[1:2], event_ids[2:]]
    assert (client.stats.sent_rest, client.stats.rejected, client.stats.retries, client.stats.buffered) == (2, 1, 0, 0)
    assert f"usage event {event_ids[1]} of acme rejected by the API, not retried" in caplog.text
