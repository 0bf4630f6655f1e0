"""A small world every REST operation can act on (customers, an issued invoice with a credit
note and a debit note, a draft, a billing run, a webhook endpoint with a delivery, a fleet), the keys of the
three scopes, and Celery tasks sent to a queue no worker reads."""

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.models import BillingRun, DebitNote, Invoice, WebhookEndpoint
from billing.services.billing_runs import billing_run_create
from billing.services.invoices import credit_note_issue, invoice_drafts_refresh, invoice_finalize
from billing.services.price_books import price_book_create
from billing.services.webhooks import webhook_event_publish
from config.celery import app
from infra_inventory import inventory_services
from metering.services import api_key_create
from scripts.demo_pricing import price_list
from tests.billing.conftest import rollup

OCT = date(2026, 10, 1)
AS_OF = datetime(2026, 11, 2, 6, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    issued: Invoice  # acme's, finalized, with a credit note and a debit note
    draft: Invoice  # globex's
    run: BillingRun
    endpoint: WebhookEndpoint
    keys: dict[str, str]  # scope → raw key; the customer key is acme's


@pytest.fixture(scope="session")
def celery_queue_unread():
    """Tasks enqueued on commit (billing runs, webhook deliveries) go to a queue of their own,
    dropped at the end: no worker of another checkout or test picks them up."""
    queue, before = f"unread-{uuid.uuid4().hex[:8]}", app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = before
    with app.connection_for_write() as connection:
        connection.default_channel.queue_delete(queue)


@pytest.fixture
def world(catalog, celery_queue_unread) -> World:
    price_book_create(effective_from=datetime(2026, 1, 1, tzinfo=UTC), currency="USD", prices=price_list(),
                      actor="test", as_of=datetime(2026, 1, 1, tzinfo=UTC))
    endpoint = WebhookEndpoint.objects.create(url="https://erp.example/hooks", secret="s" * 24)
    for customer_id in ("acme", "globex"):
        rollup(customer_id, "gpt-5.4", datetime(2026, 10, 3, 12, tzinfo=UTC), input_tokens=4_000_000,
               output=900_000)
    drafts = {i.customer.customer_id: i for i in invoice_drafts_refresh(customer_ids=["acme", "globex"], period=OCT,
                                                                        as_of=AS_OF)}
    issued = invoice_finalize(invoice_id=drafts["acme"].pk, actor="test", as_of=AS_OF)
    credit_note_issue(invoice_id=issued.pk, amount=Decimal("1.00"), reason="goodwill", actor="test", as_of=AS_OF)
    DebitNote.objects.create(invoice=issued, number="DN-2026-000001", amount=Decimal("2.00"), reason="under-billed",
                             created_by="test", created_at=AS_OF)
    webhook_event_publish(event="invoice.finalized", payload={"number": issued.number}, at=AS_OF)
    run = billing_run_create(period=OCT, finalize=False, actor="test", as_of=AS_OF)
    fleet()
    keys = {scope: api_key_create(scope=scope, customer_id="acme" if scope == "customer" else None,
                                  name=f"test-{scope}")[1] for scope in ("admin", "customer", "ingest")}
    return World(issued=issued, draft=drafts["globex"], run=run, endpoint=endpoint, keys=keys)


def fleet() -> None:
    sku = inventory_services.hardware_sku_create(
        name="h100-sxm", vendor="NVIDIA", accelerator="H100 SXM", unit_cost=Decimal("30000.00"),
        amortization_months=48, board_watts=700)
    datacenter = inventory_services.datacenter_create(name="iad-1", region="us-east", pue=Decimal("1.20"))
    inventory_services.power_contract_create(datacenter=datacenter, effective_from=datetime(2026, 1, 1, tzinfo=UTC),
                                             price_per_kwh=Decimal("0.0800"))
    cluster = inventory_services.cluster_create(name="iad-h100-a", datacenter=datacenter, sku=sku,
                                                accelerator_count=8, in_service_from=datetime(2026, 1, 1, tzinfo=UTC))
    inventory_services.deployment_create(model="gpt-5.4", region="us-east", cluster=cluster, share=Decimal("1"))
    inventory_services.power_readings_record(
        rows=[{"cluster": cluster.name, "hour": "2026-10-03T12:00:00Z", "it_kwh": "5.5"}], as_of=AS_OF)
