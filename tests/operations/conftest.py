"""Helpers for the operations tests: real work to measure, real processes on free ports,
scrapes parsed."""

import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from billing.models import BillingRun, WebhookDelivery, WebhookEndpoint
from billing.services.billing_runs import billing_run_fail, billing_run_start
from billing.services.webhooks import webhook_deliver, webhook_give_up
from infra_inventory.services import costs_allocate
from scripts.local_kafka import free_port
from tests.metering.factories import event
from tests.metering.kafka_helpers import send


def http_get(url: str, *, headers: dict | None = None, timeout_s: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when none)."""
    return sum(s.value for s in samples(text)
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def wait_for(predicate, *, timeout_s: float = 30, interval_s: float = 0.2, what: str = "the condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")


def scrape() -> str:
    """/metrics of this process, from loopback."""
    response = Client().get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def drain_mixed_traffic(producer, topics, drain) -> None:
    """3 accepted, 1 exact duplicate, 1 conflicting duplicate, 1 invalid, 1 undecodable."""
    accepted = [event(), event(), event(customer_id="globex")]
    for body in [*accepted, accepted[0], dict(accepted[1], output_tokens=7), event(model="gpt-unknown")]:
        send(producer, topics["usage"], body, key=body["customer_id"])
    send(producer, topics["usage"], b"{not json", raw=True)
    producer.flush()
    drain()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


def bill_deliver_allocate(receiver_url: str, settings) -> datetime:
    """A run done, a run failed (the latest of 2026-09), a run pending; a webhook delivered,
    one failed and given up; one hour allocated. Returns that hour."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    now = datetime.now(UTC)
    runs = {period: BillingRun.objects.create(period=period, finalize=False, requested_by="test", created_at=now)
            for period in (date(2026, 10, 1), date(2026, 9, 1), date(2026, 8, 1))}
    billing_run_start(run_id=runs[date(2026, 10, 1)].pk, as_of=now)  # no customers: done at once
    billing_run_fail(run_id=runs[date(2026, 9, 1)].pk, error="RuntimeError: test", as_of=now)
    good = WebhookEndpoint.objects.create(url=receiver_url, secret="whsec_test_secret_1")
    gone = WebhookEndpoint.objects.create(url=f"http://127.0.0.1:{free_port()}/hooks", secret="whsec_test_secret_2")
    for endpoint in (good, gone):
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event="invoice.finalized", payload={},
                                                  created_at=now)
        webhook_deliver(delivery_id=delivery.pk, as_of=now)
    webhook_give_up(delivery_id=delivery.pk)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    costs_allocate(start=hour, end=hour + timedelta(hours=1), as_of=now)
    return hour
