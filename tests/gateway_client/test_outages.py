"""The gateway loses Kafka: mid-stream (REST takes over, Kafka again once it is back),
and with the REST API down too (the buffer fills, record() waits then refuses, and all
of it is delivered once service returns). Exactly once is judged by the ledger."""

import itertools
import threading
import time
from collections import Counter

import pytest

from gateway_client import BufferFull, UsageClient
from tests.gateway_client.conftest import GATEWAY_CLIENT_ID, ledger_drain, ledger_of

pytestmark = pytest.mark.django_db(transaction=True)
CUSTOMERS = itertools.cycle(("acme", "globex"))


def record(client: UsageClient) -> str:
    return client.record(customer_id=next(CUSTOMERS), model="gpt-5.4", input_tokens=40, cached_input_tokens=8,
                         output_tokens=9)


def test_kafka_lost_mid_stream_goes_over_rest_then_back_to_kafka_exactly_once(catalog, proxied, ingest_key,
                                                                              live_server):
    proxy = proxied["proxy"]
    client = UsageClient(
        bootstrap_servers=proxied["bootstrap"], topic=proxied["usage"], client_id=GATEWAY_CLIENT_ID,
        rest_url=f"{live_server.url}/api/v1", api_key=ingest_key, flush_interval_s=0.02,
        kafka_timeout_s=1.5, kafka_retry_interval_s=0.0, retry_backoff_s=0.05,
    )
    before = [record(client) for _ in range(100)]
    assert client.flush(timeout_s=15)
    assert client.stats.sent_kafka == 100

    during = [record(client) for _ in range(50)]  # some of it in flight when the route goes
    proxy.cut()
    during += [record(client) for _ in range(150)]
    assert client.flush(timeout_s=30)
    while_cut = client.stats
    proxy.resume()
    after = [record(client) for _ in range(100)]
    assert client.flush(timeout_s=30)
    client.close()
    run = ledger_drain(bootstrap=proxied["bootstrap"], names=proxied)

    recorded = before + during + after
    stats = client.stats
    assert while_cut.sent_rest > 0  # the fallback carried events while Kafka was cut
    assert stats.sent_kafka > while_cut.sent_kafka  # and Kafka took over again once back
    assert stats.sent_kafka + stats.sent_rest == stats.recorded == len(recorded)
    assert (stats.rejected, stats.buffered) == (0, 0)
    ledger = ledger_of(recorded)
    assert sorted(ledger["appended"]) == sorted(recorded)  # every event, none twice
    # Duplicates only where a redelivery explains them: events in flight at the cut, whose
    # Kafka acknowledgement was lost and which then went over REST; each repeated once.
    assert set(ledger["duplicates"]) <= set(during)
    assert all(n == 1 for n in Counter(ledger["duplicates"]).values())
    assert run.duplicates == len(ledger["duplicates"])


def test_neither_accepts_buffer_bounded_refusal_counted_then_all_delivered_once(catalog, proxied, stub_api, caplog):
    proxy = proxied["proxy"]
    proxy.cut()
    stub_api.default = (503, {}, {"title": "Service Unavailable", "status": 503})
    client = UsageClient(
        bootstrap_servers=proxied["bootstrap"], topic=proxied["usage"], client_id=GATEWAY_CLIENT_ID,
        rest_url=stub_api.url, api_key="tl_test", max_buffered_events=40, block_timeout_s=2.0,
        flush_interval_s=0.01, kafka_timeout_s=0.5, retry_backoff_s=0.05, retry_backoff_max_s=0.2,
    )
    recorded = [record(client) for _ in range(40)]
    assert stub_api.wait_for_requests(2)  # the API was tried, and tried again: 503 both times

    started = time.monotonic()
    with pytest.raises(BufferFull):
        record(client)
    waited_s = time.monotonic() - started
    full = client.stats
    late: list[str] = []
    blocked = threading.Thread(target=lambda: late.append(record(client)))
    blocked.start()  # waits for room (backpressure) ...
    proxy.resume()  # ... which Kafka's return makes
    blocked.join(timeout=10)
    assert client.flush(timeout_s=15)
    client.close()
    run = ledger_drain(bootstrap=proxied["bootstrap"], names=proxied)

    assert waited_s >= 2.0
    assert (full.recorded, full.buffered, full.refused, full.sent_kafka, full.sent_rest) == (40, 40, 1, 0, 0)
    assert full.retries >= 2
    assert "refused: buffer full" in caplog.text
    assert len(late) == 1
    recorded += late
    assert (client.stats.sent_kafka, client.stats.buffered, client.stats.recorded) == (41, 0, 41)
    ledger = ledger_of(recorded)
    assert sorted(ledger["appended"]) == sorted(recorded)
    assert ledger["duplicates"] == [] and run.duplicates == 0
