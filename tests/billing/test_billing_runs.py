"""Billing runs on a real Celery worker (Redis), concurrency, and signed webhooks delivered
to a real local HTTP server that fails before it succeeds."""

import json
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from billing.models import BillingRun, Invoice, WebhookDelivery, WebhookEndpoint
from billing.services.billing_runs import billing_run_chunk, billing_run_start
from billing.services.invoices import invoice_finalize
from billing.services.webhooks import SIGNATURE_HEADER, signature_verify
from metering.models import Customer
from tests.billing.conftest import rollup
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
OCT = date(2026, 10, 1)
CUSTOMERS = [f"cust-{i:02d}" for i in range(12)]


@pytest.fixture
def usage(list_prices):
    Customer.objects.bulk_create(Customer(customer_id=c, name=c) for c in CUSTOMERS)
    for rank, customer_id in enumerate(CUSTOMERS):
        rollup(customer_id, "gpt-5.4", datetime(2026, 10, 3, rank, tzinfo=UTC), input_tokens=(rank + 1) * 1_000_000)
        rollup(customer_id, "gpt-5.4-nano", datetime(2026, 10, 9, tzinfo=UTC), input_tokens=1_000_000, output=10)



def run_done(run_id: int) -> BillingRun | None:
    run = BillingRun.objects.get(pk=run_id)
    assert run.status != "failed", run.error
    return run if run.status == "done" else None


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that answers 500 to the first delivery of each event, 200 after."""

    received: list = []
    failed_once: set = set()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event = self.headers["Tokenledger-Delivery"]
        first = event not in self.failed_once
        self.failed_once.add(event)
        self.received.append((dict(self.headers), body, 500 if first else 200))
        self.send_response(500 if first else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.failed_once = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


def test_a_billing_run_on_a_real_worker_issues_invoices_and_signed_webhooks(usage, celery_worker, receiver,
                                                                           api_client_for, settings):
    settings.BILLING_CHUNK_CUSTOMERS = 5
    WebhookEndpoint.objects.create(url=receiver, secret="whsec_test", events=["invoice.finalized"])
    admin = api_client_for("admin")

    accepted = admin.post("/api/v1/billing-runs", {"period": "2026-10", "finalize": True}, format="json")
    run = wait_for(lambda: run_done(accepted.json()["id"]))
    progress = admin.get(f"/api/v1/billing-runs/{run.pk}").json()
    delivered = wait_for(lambda: WebhookDelivery.objects.filter(status="delivered").count() == 12, timeout_s=90)

    assert accepted.status_code == 202
    assert (progress["customers_done"], progress["customers_total"], progress["status"]) == (12, 12, "done")
    numbers = sorted(Invoice.objects.filter(period=OCT).values_list("number", flat=True))
    assert numbers == [f"INV-{datetime.now(UTC).year}-{n:06d}" for n in range(1, 13)]
    assert delivered
    successes = [(headers, body) for headers, body, code in Receiver.received if code == 200]
    assert len(successes) == 12 and len(Receiver.received) == 24  # each failed once, then was retried
    headers, body = successes[0]
    assert signature_verify(secret="whsec_test", header=headers[SIGNATURE_HEADER], body=body)
    assert not signature_verify(secret="wrong", header=headers[SIGNATURE_HEADER], body=body)
    assert json.loads(body)["type"] == "invoice.finalized"
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {2}


def test_two_runs_of_one_period_at_once_give_one_invoice_per_customer(usage, celery_worker, api_client_for):
    admin = api_client_for("admin")

    runs = [admin.post("/api/v1/billing-runs", {"period": "2026-10"}, format="json").json()["id"] for _ in range(2)]
    for run_id in runs:
        wait_for(lambda: run_done(run_id))

    invoices = Invoice.objects.filter(period=OCT)
    assert invoices.count() == 12 and set(invoices.values_list("status", flat=True)) == {"draft"}
    totals = dict(invoices.values_list("customer__customer_id", "total"))
    assert totals["cust-00"] == Decimal("2.70") and totals["cust-11"] == Decimal("30.20")


def test_concurrent_chunks_and_finalizations_stay_unique_and_gapless(usage):
    run = BillingRun.objects.create(period=OCT, finalize=False, requested_by="test", created_at=datetime.now(UTC))
    chunks = billing_run_start(run_id=run.pk, as_of=datetime.now(UTC))
    errors = []

    def in_thread(work):
        def target():
            try:
                work()
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)
            finally:
                connection.close()
        return threading.Thread(target=target)

    # every chunk twice at once, as when a worker dies and the broker redelivers its task
    threads = [in_thread(lambda c=c: billing_run_chunk(chunk_id=c, as_of=datetime.now(UTC))) for c in chunks * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drafts = list(Invoice.objects.filter(period=OCT).values_list("pk", flat=True))
    finalizers = [in_thread(lambda pk=pk: invoice_finalize(invoice_id=pk, actor="t", as_of=datetime.now(UTC)))
                  for pk in drafts]
    for thread in finalizers:
        thread.start()
    for thread in finalizers:
        thread.join()

    assert errors == []
    run.refresh_from_db()
    assert (run.status, run.customers_done, run.customers_total) == ("done", 12, 12)
    assert len(drafts) == 12
    numbers = sorted(int(n[-6:]) for n in Invoice.objects.filter(period=OCT).values_list("number", flat=True))
    assert numbers == list(range(1, 13))
