"""Events recorded by the gateway client reach the ledger exactly once over Kafka,
batched per customer, with the real broker and the real ledger consumer."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway_client import ClientClosed, UsageClient
from tests.gateway_client.conftest import ledger_of, topic_messages
from tests.metering.kafka_helpers import read_topic

pytestmark = pytest.mark.django_db(transaction=True)
REPO = Path(__file__).resolve().parents[2]


def test_events_from_many_threads_reach_the_ledger_once_in_arrays_per_customer(catalog, topics, drain, kafka_bootstrap):
    client = UsageClient(bootstrap_servers=kafka_bootstrap, topic=topics["usage"], flush_interval_s=3600)

    def gateway_thread(customer_id: str, requests: int) -> list[str]:
        return [client.record(customer_id=customer_id, model="gpt-5.4", input_tokens=100, cached_input_tokens=20,
                              output_tokens=7, region="us-east", cluster="iad-h100-a") for _ in range(requests)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(gateway_thread, "acme", 300) for _ in range(7)]
        futures.append(pool.submit(gateway_thread, "globex", 10))
    event_ids = [event_id for future in futures for event_id in future.result()]
    delivered = client.flush(timeout_s=20)
    # idempotent production: the id the broker granted the producer (kafka-python internals)
    producer_id = client._kafka._producer._transaction_manager.producer_id_and_epoch.producer_id
    client.close()

    assert delivered
    assert producer_id >= 0  # idempotent production: the broker handed out a producer id
    assert client.stats.recorded == client.stats.sent_kafka == 2110
    assert (client.stats.buffered, client.stats.retries, client.stats.sent_rest) == (0, 0, 0)
    messages = topic_messages(kafka_bootstrap, topics["usage"], elements=2110)
    assert all(isinstance(value, list) and 1 <= len(value) <= 1000 for _, value in messages)
    assert all(event["customer_id"] == key for key, value in messages for event in value)
    assert max(len(value) for key, value in messages if key == "acme") == 1000
    on_topic = [event["event_id"] for _, value in messages for event in value]
    assert sorted(on_topic) == sorted(event_ids)

    run = drain()

    assert (run.appended, run.duplicates) == (2110, 0)
    ledger = ledger_of(event_ids)
    assert sorted(ledger["appended"]) == sorted(event_ids)
    assert ledger["duplicates"] == []


def test_close_flushes_what_the_interval_has_not_sent(catalog, topics, drain, kafka_bootstrap):
    with UsageClient(bootstrap_servers=kafka_bootstrap, topic=topics["usage"], flush_interval_s=3600) as client:
        event_ids = [client.record(customer_id="acme", model="gpt-5.4-mini", input_tokens=5, output_tokens=1)
                     for _ in range(5)]
        held_before_close = client.stats.buffered

    drain()

    from metering.models import DeadLetter
    print(list(DeadLetter.objects.values("reason", "errors", "payload")))
    assert held_before_close == 5
    assert (client.stats.sent_kafka, client.stats.buffered) == (5, 0)
    assert sorted(ledger_of(event_ids)["appended"]) == sorted(event_ids)
    with pytest.raises(ClientClosed):
        client.record(customer_id="acme", model="gpt-5.4", input_tokens=1, output_tokens=1)


def test_process_exit_flushes_and_the_client_imports_no_django(topics, kafka_bootstrap):
    script = f"""
import sys
import gateway_client, gateway_client.litellm_callback
from gateway_client import UsageClient
client = UsageClient(bootstrap_servers={kafka_bootstrap!r}, topic={topics['usage']!r}, flush_interval_s=3600)
client.record(customer_id="acme", model="gpt-5.4", event_id="served-before", input_tokens=3, output_tokens=1)
assert client.flush(timeout_s=20)
client.record(customer_id="acme", model="gpt-5.4", event_id="at-exit-1", input_tokens=3, output_tokens=1)
try:
    client.record(customer_id="acme", model="gpt-5.4", event_id="at-exit-2", provider_usage={{
        "format": "openai.chat", "usage": {{"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}}})
except Exception as exc:
    print("provider_usage refused:", exc, file=sys.stderr)
assert "django" not in sys.modules, sorted(m for m in sys.modules if m.startswith("django"))
print(client.stats.buffered)
"""

    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    held_at_exit = int(done.stdout.strip())
    records = read_topic(kafka_bootstrap, topics["usage"], expected=2)
    on_topic = [event["event_id"] for record in records for event in json.loads(record.value)]
    assert on_topic[0] == "served-before"
    assert held_at_exit == len(on_topic) - 1 >= 1  # held at exit, all sent by the atexit flush
    assert "at-exit-1" in on_topic


def test_close_logs_what_it_could_not_deliver(caplog, unused_port):
    client = UsageClient(bootstrap_servers=f"127.0.0.1:{unused_port}", kafka_timeout_s=0.3, flush_interval_s=0.01,
                         retry_backoff_s=0.05)
    for _ in range(3):
        client.record(customer_id="acme", model="gpt-5.4", input_tokens=1, output_tokens=1)

    delivered = client.close(timeout_s=1)

    assert not delivered
    assert client.stats.buffered == 3 and client.stats.retries >= 1
    assert "closed with 3 events undelivered" in caplog.text


@pytest.fixture
def unused_port():
    from scripts.local_kafka import free_port

    return free_port()
