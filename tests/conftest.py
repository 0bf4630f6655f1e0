"""Shared fixtures: a real Kafka-protocol broker over TCP, catalog rows, API clients.

When KAFKA_BOOTSTRAP_SERVERS is set the tests use that broker; otherwise they start
the local Tansu broker once per session. Each Kafka test gets its own topics and
consumer group, so tests never see each other's messages.
"""

import decimal
import os
import time
import uuid
from datetime import UTC, datetime
from threading import Barrier, Event, Thread

import pytest

# litellm (the gateway callback's tests) would fetch its model price map from GitHub at
# import; the copy it ships with is what the tests use, here and in their subprocesses.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from kafka import KafkaProducer

from billing.permissions import FINANCE_MANAGER, FINANCE_VIEWER
from metering.consumer.runner import ConsumerConfig, LedgerConsumer
from metering.models import Customer, ServiceTier
from metering.producer import producer_close
from metering.services import api_key_create, catalog_model_create
from metering.schemas import SERVICE_TIERS_SEEDED
from scripts import local_kafka

TEST_SESSION_TIMEOUT_MS = 2_000  # Tansu group joins take about half of this


@pytest.fixture(autouse=True)
def _decimal_float_trap():
    """A float mixed into Decimal money math fails the test loudly."""
    context = decimal.getcontext()
    context.traps[decimal.FloatOperation] = True
    yield
    context.traps[decimal.FloatOperation] = False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    port = local_kafka.free_port()
    process = local_kafka.broker_start(port=port, log_path=tmp_path_factory.mktemp("kafka") / "tansu.log")
    yield f"127.0.0.1:{port}"
    producer_close()
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def topics(kafka_bootstrap, settings):
    """Fresh usage and DLQ topics (3 partitions) wired into settings for this test."""
    suffix = uuid.uuid4().hex[:10]
    names = {"usage": f"usage-events-{suffix}", "dlq": f"usage-events-dlq-{suffix}", "group": f"ledger-{suffix}"}
    local_kafka.topics_ensure(kafka_bootstrap, [names["usage"], names["dlq"]], partitions=3)
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_bootstrap
    settings.KAFKA_USAGE_TOPIC = names["usage"]
    settings.KAFKA_USAGE_DLQ_TOPIC = names["dlq"]
    settings.KAFKA_CONSUMER_GROUP = names["group"]
    return names


@pytest.fixture
def producer(kafka_bootstrap):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=2)
    yield producer
    producer.close(timeout=5)


@pytest.fixture
def drain(kafka_bootstrap, topics):
    """Run the real ledger consumer in this process until the topic is idle."""

    def run(*, group: str | None = None, idle_s: float = 1.5):
        config = ConsumerConfig(
            bootstrap_servers=kafka_bootstrap, topic=topics["usage"], group_id=group or topics["group"],
            dlq_topic=topics["dlq"], session_timeout_ms=TEST_SESSION_TIMEOUT_MS, idle_exit_s=idle_s,
            stats_interval_s=3600,
        )
        return LedgerConsumer(config).run(Event())

    return run


@pytest.fixture
def catalog(db):
    """Two customers, the demo model catalog and the seeded service tiers (migration 0003
    seeds them; a transactional test's flush empties the table)."""
    for name in SERVICE_TIERS_SEEDED:
        ServiceTier.objects.get_or_create(name=name)
    customers = [Customer.objects.create(customer_id=c, name=c.title()) for c in ("acme", "globex")]
    for name, tier in (("gpt-5.4", "frontier"), ("gpt-5.4-mini", "mini"), ("gpt-5.4-nano", "nano")):
        catalog_model_create(name=name, tier=tier)
    return customers


@pytest.fixture
def api_client_for(db):
    """api_client_for(scope, customer_id=None) → a DRF client carrying a fresh key of that scope."""
    from rest_framework.test import APIClient

    def make(scope: str, customer_id: str | None = None) -> APIClient:
        _, raw_key = api_key_create(scope=scope, customer_id=customer_id, name=f"test-{scope}")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


def wait_for(predicate, timeout_s: float = 60, interval_s: float = 0.1):
    """The first true value of `predicate()`, polled until `timeout_s`; fails the test after."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval_s)
    raise AssertionError("timed out")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def at_once(work, *, threads: int) -> list[Exception]:
    """Run `work` in `threads` threads released together (each with its own database
    connection, closed after); returns what they raised."""
    barrier, errors = Barrier(threads), []

    def run():
        try:
            barrier.wait()
            work()
        except Exception as exc:  # noqa: BLE001 - the caller asserts on them
            errors.append(exc)
        finally:
            connection.close()

    started = [Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return errors


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process (2 prefork children) on Redis, on a queue of its own,
    against the test database."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from django.db import connection

    from config.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    db = connection.settings_dict
    env = dict(os.environ, DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               CELERY_TASK_DEFAULT_QUEUE=queue, WEBHOOK_RETRY_BASE_SECONDS="0.3", WEBHOOK_ALLOW_PRIVATE_URLS="1",
               LOG_LEVEL="WARNING")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "2", "--pool", "prefork",
         "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{queue}@%h"],
        cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Celery worker did not start: {worker.stderr.read().decode()[-2000:]}")
    yield queue
    worker.terminate()
    worker.wait(timeout=30)


@pytest.fixture
def staff_client(db):
    """staff_client(group) → a logged-in client of a staff user in that finance group
    (billing syncs the groups on post_migrate); staff_client(None, superuser=True) → root."""

    def make(group: str | None, *, superuser: bool = False) -> Client:
        if superuser:
            user = User.objects.create_superuser("root", password="pw")
        else:
            user = User.objects.create_user(group.split("-")[1], password="pw", is_staff=True)
            user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def manager(staff_client):
    return staff_client(FINANCE_MANAGER)


@pytest.fixture
def viewer(staff_client):
    return staff_client(FINANCE_VIEWER)


@pytest.fixture
def root(staff_client):
    return staff_client(None, superuser=True)
