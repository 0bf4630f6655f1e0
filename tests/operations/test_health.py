"""/healthz and /readyz against the real Postgres and the test broker, and a broker that is
not there."""

import pytest
from django.test import Client

from scripts.local_kafka import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client(HTTP_HOST="web:8000")  # a name ALLOWED_HOSTS doesn't list, as compose and Prometheus use


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/healthz"])
def test_healthz_answers_without_a_key_or_an_allowed_host(client, path):
    response = client.get(path)

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("path", ["/readyz", "/api/v1/readyz"])
def test_readyz_is_ready_with_postgres_and_the_broker_reachable(client, topics, path):
    response = client.get(path)

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["kafka"]["ok"]
    assert body["checks"]["kafka"]["detail"] == f"topic {topics['usage']} has 3 partitions"


def test_readyz_names_kafka_when_the_broker_is_unreachable(client, settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port()}"
    settings.READINESS_TIMEOUT_MS = 500

    response = client.get("/readyz")

    body = response.json()
    assert (response.status_code, response["Content-Type"]) == (503, "application/problem+json")
    assert body["failing"] == ["kafka"] and body["status"] == 503
    assert body["detail"].startswith(f"kafka: {settings.KAFKA_BOOTSTRAP_SERVERS}: ")
    assert body["checks"]["database"]["ok"] and not body["checks"]["kafka"]["ok"]


def test_readyz_names_a_missing_usage_topic(client, kafka_bootstrap, settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_bootstrap
    settings.KAFKA_USAGE_TOPIC = "usage-events-never-created"

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["detail"] == f"kafka: topic usage-events-never-created does not exist on {kafka_bootstrap}"


def test_a_kafka_verdict_is_kept_for_a_few_seconds(client, settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port()}"
    settings.READINESS_TIMEOUT_MS = 500

    first, second = client.get("/readyz").json(), client.get("/readyz").json()

    assert second["checks"]["kafka"] == first["checks"]["kafka"]  # the same verdict, latency included
