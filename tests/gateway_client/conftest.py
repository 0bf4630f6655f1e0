"""Fixtures of the gateway client tests: a broker the gateway can lose on its own, a
stub of the REST API for answers the real one does not give on demand, and the real
ledger consumer run against either broker."""

import json
import subprocess
import threading
import time
import uuid
from threading import Event

import pytest

from metering.consumer.runner import ConsumerConfig, LedgerConsumer
from metering.models import UsageDuplicate, UsageEvent
from metering.producer import producer_close
from metering.services import api_key_create
from scripts import local_kafka
from tests.conftest import TEST_SESSION_TIMEOUT_MS
from tests.gateway_client.http_stub import QuietHandler, serve
from tests.gateway_client.kafka_proxy import ClientIdProxy

GATEWAY_CLIENT_ID = "gateway-under-test"  # the proxy cuts this client's connections only


@pytest.fixture(scope="session")
def gateway_broker(tmp_path_factory):
    """A Tansu broker of these tests, advertised at a ClientIdProxy: every client reaches
    it through the proxy, and `proxy.cut()` takes it away from the gateway client only."""
    proxy = ClientIdProxy(prefix=GATEWAY_CLIENT_ID)
    port = local_kafka.free_port()
    log = open(tmp_path_factory.mktemp("gateway-kafka") / "tansu.log", "ab")
    process = subprocess.Popen(
        [local_kafka.tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{proxy.port}", "--silent"],
        stdout=log, stderr=log, start_new_session=True,
    )
    proxy.upstream = ("127.0.0.1", port)
    deadline = time.monotonic() + 20
    while not local_kafka.port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the gateway tests' broker did not start")
        time.sleep(0.05)
    yield proxy
    proxy.close()
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
def proxied(gateway_broker, settings):
    """Fresh topics on the proxied broker, wired into settings, so the REST API (the live
    server, in this process) produces there too."""
    suffix = uuid.uuid4().hex[:10]
    bootstrap = f"127.0.0.1:{gateway_broker.port}"
    names = {"usage": f"gw-usage-{suffix}", "dlq": f"gw-dlq-{suffix}", "group": f"gw-ledger-{suffix}",
             "bootstrap": bootstrap, "proxy": gateway_broker}
    local_kafka.topics_ensure(bootstrap, [names["usage"], names["dlq"]], partitions=3)
    settings.KAFKA_BOOTSTRAP_SERVERS = bootstrap
    settings.KAFKA_USAGE_TOPIC = names["usage"]
    settings.KAFKA_USAGE_DLQ_TOPIC = names["dlq"]
    settings.KAFKA_CONSUMER_GROUP = names["group"]
    producer_close()  # the web process's shared producer: made again against this broker
    yield names
    gateway_broker.resume()
    producer_close()


@pytest.fixture
def rest_producer_fresh():
    """The REST API's shared producer, made again against the broker of this test."""
    producer_close()
    yield
    producer_close()


def ledger_drain(*, bootstrap: str, names: dict, idle_s: float = 1.5):
    config = ConsumerConfig(
        bootstrap_servers=bootstrap, topic=names["usage"], group_id=names["group"], dlq_topic=names["dlq"],
        session_timeout_ms=TEST_SESSION_TIMEOUT_MS, idle_exit_s=idle_s, stats_interval_s=3600,
    )
    return LedgerConsumer(config).run(Event())


def ledger_of(event_ids) -> dict:
    """What the ledger holds of these events: ids appended (a list, so a double shows)
    and ids counted as duplicates."""
    event_ids = list(event_ids)
    return {
        "appended": list(UsageEvent.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True)),
        "duplicates": list(UsageDuplicate.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True)),
    }


@pytest.fixture
def ingest_key(transactional_db):
    _, raw_key = api_key_create(scope="ingest", customer_id=None, name="gateway-test")
    return raw_key


class StubApi:
    """POST /api/v1/usage-events answered from a script of (status, headers, body) and
    then `default`; every request body kept, with the time it arrived."""

    def __init__(self):
        self.script: list[tuple[int, dict, dict | None]] = []
        self.default: tuple[int, dict, dict | None] = (503, {}, {"title": "down"})
        self.requests: list[tuple[float, bytes, dict]] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        stub = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with stub.lock:
                    stub.requests.append((time.monotonic(), body, dict(self.headers)))
                    status, headers, answer = stub.script.pop(0) if stub.script else stub.default
                    if callable(answer):
                        answer = answer(json.loads(body))
                    stub.arrived.notify_all()
                raw = json.dumps(answer).encode() if answer is not None else b""
                self.reply(status, raw, {"Content-Type": "application/json", **headers})

        self.server, base = serve(Handler)
        self.url = f"{base}/api/v1"

    def wait_for_requests(self, count: int, timeout_s: float = 10) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.requests) >= count, timeout_s)

    def events_posted(self) -> list[dict]:
        return [e for _, body, _ in self.requests for e in json.loads(body)["events"]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_api():
    stub = StubApi()
    yield stub
    stub.close()


def accept_all(body: dict) -> dict:
    return {"accepted": len(body["events"]), "rejected": []}


def topic_messages(bootstrap: str, topic: str, *, elements: int, timeout_s: float = 15) -> list[tuple[str, list]]:
    """(key, decoded value) of every message of a topic, read from the beginning until
    they hold `elements` events in all."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    messages, held, deadline = [], 0, time.monotonic() + timeout_s
    while held < elements and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            for record in batch:
                value = json.loads(record.value)
                messages.append((record.key.decode(), value))
                held += len(value) if isinstance(value, list) else 1
    consumer.close()
    return messages
