"""Request bodies: JSON-consuming operations take application/json only (415 otherwise, as
a problem), and a chunked body (no Content-Length) reaches the API under gunicorn, still
refused past 5 MiB."""

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from scripts import local_kafka
from tests.metering.factories import event
from tests.metering.kafka_helpers import read_topic

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"
JSON_CONSUMERS = [  # (method, path, a valid JSON body)
    ("post", "/api/v1/usage-events", None),  # filled with a fresh event
    ("post", "/api/v1/power-readings", {"readings": []}),
    ("post", "/api/v1/customers", {"customer_id": "initech", "name": "Initech"}),
    ("patch", "/api/v1/customers/acme", {"name": "Acme"}),
    ("put", "/api/v1/customers/acme/contract", {"effective_from": "2026-01-01T00:00:00Z"}),
    ("post", "/api/v1/billing-runs", {"period": "2026-10"}),
]
NOT_JSON = [  # (Content-Type or None, body)
    ("text/plain", '{"name": "Acme"}'),
    ("application/xml", "<customer><name>Acme</name></customer>"),
    ("application/x-www-form-urlencoded", "name=Acme"),
    ("multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nAcme\r\n--b--\r\n'),
    (None, '{"name": "Acme"}'),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("content_type", "body"), NOT_JSON)
def test_a_body_that_is_not_application_json_is_415(catalog, api_client_for, content_type, body):
    keys = {"usage-events": api_client_for("ingest")}
    admin = api_client_for("admin")
    for method, path, _ in JSON_CONSUMERS:
        client = keys.get(path.rsplit("/", 1)[-1], admin)

        response = client.generic(method.upper(), path, body, content_type=content_type or "")

        assert (response.status_code, response["Content-Type"]) == (415, PROBLEM), (path, content_type)
        assert response.json()["status"] == 415


@pytest.mark.django_db
def test_json_with_a_charset_is_json(catalog, api_client_for):
    response = api_client_for("admin").post("/api/v1/customers", data=json.dumps({"customer_id": "initech",
                                                                                  "name": "Initech"}),
                                            content_type="application/json; charset=utf-8")

    assert response.status_code == 201


@pytest.mark.django_db
def test_a_json_body_over_5_mib_is_413_on_every_operation(catalog, api_client_for):
    body = json.dumps({"customer_id": "initech", "name": "x" * (5 * 1024 * 1024)})

    response = api_client_for("admin").post("/api/v1/customers", data=body, content_type="application/json")

    assert (response.status_code, response["Content-Type"]) == (413, PROBLEM)


# --- chunked bodies under gunicorn -------------------------------------------------------------


@pytest.fixture
def gunicorn(topics, kafka_bootstrap) -> Iterator[int]:
    """The app under gunicorn (one sync worker) against the test database and this test's topic."""
    db, port = connection.settings_dict, local_kafka.free_port()
    env = dict(os.environ, DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_USAGE_TOPIC=topics["usage"], LOG_LEVEL="WARNING")
    process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "-w", "1",
                                "-b", f"127.0.0.1:{port}", "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not local_kafka.port_open("127.0.0.1", port):
            assert process.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def post_chunked(port: int, path: str, key: str, body: bytes) -> tuple[int, str, dict]:
    """POST with `Transfer-Encoding: chunked` and no Content-Length, 64 KiB a chunk."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
        connection.request("POST", path, body=chunks, encode_chunked=True,
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_reaches_the_api_under_gunicorn(catalog, api_client_for, gunicorn, topics,
                                                       kafka_bootstrap):
    from metering.services import api_key_create

    ingest, admin = (api_key_create(scope=scope, name=f"test-{scope}")[1] for scope in ("ingest", "admin"))
    sent = event()

    accepted = post_chunked(gunicorn, "/api/v1/usage-events", ingest, json.dumps({"events": [sent]}).encode())
    created = post_chunked(gunicorn, "/api/v1/customers", admin, b'{"customer_id": "initech", "name": "Initech"}')

    assert accepted == (202, "application/json", {"accepted": 1, "rejected": []})
    assert [json.loads(r.value)["event_id"] for r in read_topic(kafka_bootstrap, topics["usage"], expected=1)] \
        == [sent["event_id"]]
    assert created[:2] == (201, "application/json") and created[2]["customer_id"] == "initech"


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_over_5_mib_is_413_under_gunicorn(catalog, gunicorn):
    from metering.services import api_key_create

    ingest = api_key_create(scope="ingest", name="test-ingest")[1]
    body = json.dumps({"events": [event(metadata={"pad": "x" * (5 * 1024 * 1024)})]}).encode()

    status, content_type, problem = post_chunked(gunicorn, "/api/v1/usage-events", ingest, body)

    assert (status, content_type, problem["status"]) == (413, PROBLEM, 413)
