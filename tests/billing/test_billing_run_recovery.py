"""The billing run state machine after failures: the watchdog sends again only chunks that
nobody is working on, a chunk out of attempts fails its run with the reason, a failed run
is re-driven to the end (service, admin), and a failed attempt is retried by the worker."""

import base64
import io
import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from billing.models import AuditEntry, BillingRun, BillingRunChunk, Invoice
from billing.schedule import beat_defaults_install
from billing.services.billing_runs import (
    CHUNK_LOCK_NAMESPACE, BillingRunChunkRetry, BillingRunNotFailed, billing_run_chunk, billing_run_create,
    billing_run_redrive, billing_run_start, billing_runs_watchdog,
)
from billing.services.invoices import InvoiceUnpriced, invoice_drafts_refresh, invoices_issue
from config.celery import app
from metering.models import Customer
from metering.services import catalog_model_create, model_tier_change
from tests.billing.conftest import rollup
from tests.conftest import at_once, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
OCT = date(2026, 10, 1)
T0 = datetime(2026, 11, 2, 6, tzinfo=UTC)
DEADLINE = timedelta(seconds=120)


@pytest.fixture
def sent():
    """Tasks go to a queue of this test's own, with no worker on it; sent() lists them."""
    queue = f"test-scratch-{uuid.uuid4().hex[:8]}"
    previous, app.conf.task_default_queue = app.conf.task_default_queue, queue
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)

    def read() -> list[tuple[str, dict]]:
        tasks = []
        for raw in reversed(client.lrange(queue, 0, -1)):  # pushed on the left, taken from the right
            message = json.loads(raw)
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            tasks.append((message["headers"]["task"].rsplit(".", 1)[1], kwargs))
        client.delete(queue)
        return tasks

    yield read
    client.delete(queue)
    app.conf.task_default_queue = previous


def customers_with_usage(names: list[str], model: str = "gpt-5.4") -> None:
    Customer.objects.bulk_create(Customer(customer_id=c, name=c) for c in names)
    for name in names:
        rollup(name, model, datetime(2026, 10, 5, tzinfo=UTC), input_tokens=1_000_000)


@pytest.fixture
def run_of_four_chunks(list_prices, settings):
    settings.BILLING_CHUNK_CUSTOMERS = 4
    customers_with_usage([f"c-{i:02d}" for i in range(16)])
    run = BillingRun.objects.create(period=OCT, finalize=False, requested_by="test", created_at=T0)
    billing_run_start(run_id=run.pk, as_of=T0)
    return run, list(run.chunks.order_by("number"))


class OtherSession:
    """A live attempt elsewhere: another Postgres session holding a chunk's advisory lock."""

    def __init__(self, chunk_id: int):
        db = connection.settings_dict
        self.conn = psycopg.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"],
                                    autocommit=True)
        self.conn.execute("SELECT pg_advisory_lock(%s, %s)", (CHUNK_LOCK_NAMESPACE, chunk_id))

    def close(self):
        self.conn.close()  # as when the attempt's process dies: Postgres drops the lock


def test_the_watchdog_sends_again_only_chunks_nobody_is_working_on(run_of_four_chunks, sent):
    run, (recent, lost, live, queued) = run_of_four_chunks
    late = T0 + DEADLINE + timedelta(seconds=1)
    BillingRunChunk.objects.filter(pk=recent.pk).update(started_at=late - timedelta(seconds=5),
                                                        done_at=late - timedelta(seconds=5))
    BillingRunChunk.objects.filter(pk__in=[lost.pk, live.pk]).update(started_at=T0, attempts=1)
    holder = OtherSession(live.pk)
    sent()

    try:
        first = billing_runs_watchdog(as_of=late)
        again = billing_runs_watchdog(as_of=late)  # a second watchdog at once sends nothing more
    finally:
        holder.close()
    after_release = billing_runs_watchdog(as_of=late)
    stalled = billing_runs_watchdog(as_of=late + DEADLINE + timedelta(seconds=1))

    assert first == [lost.pk] and again == []  # not the live one, nor the one queued behind live work
    assert after_release == [live.pk]
    assert queued.pk in stalled  # once the run has made no progress for the deadline, queued ones too
    assert sent()[:2] == [("billing_run_chunk_task", {"run_id": run.pk, "chunk_id": lost.pk}),
                          ("billing_run_chunk_task", {"run_id": run.pk, "chunk_id": live.pk})]


def test_the_watchdog_restarts_a_run_left_pending(list_prices, sent):
    run = BillingRun.objects.create(period=OCT, finalize=False, requested_by="test", created_at=T0)

    early = billing_runs_watchdog(as_of=T0 + DEADLINE - timedelta(seconds=1))
    early_tasks = sent()
    billing_runs_watchdog(as_of=T0 + DEADLINE + timedelta(seconds=1))

    assert early == [] and early_tasks == []
    assert sent() == [("billing_run_start_task", {"run_id": run.pk})]


def test_a_chunk_whose_worker_is_lost_every_attempt_fails_its_run(run_of_four_chunks, sent, settings):
    run, chunks = run_of_four_chunks
    BillingRunChunk.objects.filter(pk=chunks[1].pk).update(started_at=T0, attempts=settings.BILLING_CHUNK_ATTEMPTS_MAX)
    sent()

    billing_runs_watchdog(as_of=T0 + DEADLINE + timedelta(seconds=1))

    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error == "chunk 1 gave up after 3 attempts: its worker was lost each time"
    assert ("billing_run_chunk_task", {"run_id": run.pk, "chunk_id": chunks[1].pk}) not in sent()


def test_a_chunk_failing_every_attempt_fails_the_run_which_a_redrive_then_finishes(list_prices, settings, sent):
    settings.BILLING_CHUNK_CUSTOMERS = 4
    catalog_model_create(name="embed-1", tier="embedding")  # no price book prices this tier
    customers_with_usage(["a-unpriced"], model="embed-1")
    customers_with_usage([f"b-{i}" for i in range(7)])
    run = BillingRun.objects.create(period=OCT, finalize=True, requested_by="test", created_at=T0)
    bad, good = billing_run_start(run_id=run.pk, as_of=T0)

    retries = []
    for _ in range(2):
        with pytest.raises(BillingRunChunkRetry) as retry:
            billing_run_chunk(chunk_id=bad, as_of=T0)
        retries.append(retry.value.countdown_s)
        assert BillingRun.objects.get(pk=run.pk).status == "running"  # a failed attempt is not a failed run
    with pytest.raises(InvoiceUnpriced):
        billing_run_chunk(chunk_id=bad, as_of=T0)
    other = billing_run_chunk(chunk_id=good, as_of=T0)
    abandoned = billing_run_chunk(chunk_id=bad, as_of=T0)
    failed = BillingRun.objects.get(pk=run.pk)
    model_tier_change(model_name="embed-1", tier="nano", effective_from=datetime(2026, 9, 1, tzinfo=UTC))
    redriven = billing_run_redrive(run_id=run.pk, actor="user:ops", as_of=T0 + timedelta(hours=1))
    tasks = sent()
    finished = billing_run_chunk(chunk_id=bad, as_of=T0 + timedelta(hours=1))

    assert retries == [5, 10]
    assert (failed.status, failed.customers_done, failed.customers_total) == ("failed", 4, 8)
    assert failed.error.startswith("chunk 0 gave up after 3 attempts: InvoiceUnpriced:")
    assert (other, abandoned) == ("done", "abandoned")
    assert (redriven.status, redriven.error) == ("running", "")
    assert tasks == [("billing_run_chunk_task", {"run_id": run.pk, "chunk_id": bad})]
    assert finished == "done"
    run.refresh_from_db()
    assert (run.status, run.customers_done) == ("done", 8)
    assert BillingRunChunk.objects.get(pk=bad).attempts == 1
    numbers = sorted(int(n[-6:]) for n in Invoice.objects.filter(period=OCT).values_list("number", flat=True))
    assert numbers == list(range(1, 9))
    assert AuditEntry.objects.filter(action="billing_run.redrive", object_id=str(run.pk)).count() == 1
    with pytest.raises(BillingRunNotFailed):
        billing_run_redrive(run_id=run.pk, actor="user:ops", as_of=T0)


def test_two_attempts_of_a_finalizing_chunk_at_once_issue_each_invoice_once(list_prices):
    """What the chunk lock sits on: even unserialized, attempts are idempotent under the
    customers' row locks (as when a watchdog's copy and a straggler overlap)."""
    customers = [f"c-{i:02d}" for i in range(12)]
    customers_with_usage(customers)

    def attempt():
        invoice_drafts_refresh(customer_ids=customers, period=OCT, as_of=T0)
        invoices_issue(customer_ids=customers, period=OCT, actor="billing-run:test", as_of=T0)

    errors = at_once(attempt, threads=4)

    assert errors == []
    invoices = Invoice.objects.filter(period=OCT)
    assert sorted(invoices.values_list("customer__customer_id", flat=True)) == customers
    assert sorted(int(n[-6:]) for n in invoices.values_list("number", flat=True)) == list(range(1, 13))


def test_finance_managers_redrive_failed_runs_from_admin(list_prices, manager, viewer, sent):
    run = BillingRun.objects.create(period=OCT, finalize=False, requested_by="test", created_at=T0,
                                    status="failed", error="IntegrityError: boom")
    changelist = reverse("admin:billing_billingrun_changelist")
    action = {"action": "redrive", "_selected_action": [run.pk]}

    viewer.post(changelist, action)
    untouched = BillingRun.objects.get(pk=run.pk).status
    manager.post(changelist, action)

    assert untouched == "failed"
    run.refresh_from_db()
    assert (run.status, run.error) == ("pending", "")  # failed before it was split: started again
    assert sent() == [("billing_run_start_task", {"run_id": run.pk})]


def test_the_redrive_command_sends_the_chunks_not_done(run_of_four_chunks, sent):
    run, chunks = run_of_four_chunks
    BillingRunChunk.objects.filter(pk=chunks[0].pk).update(done_at=T0)
    BillingRun.objects.filter(pk=run.pk).update(status="failed", error="chunk 1 gave up after 3 attempts: x")
    sent()
    out = io.StringIO()

    call_command("redrive_billing_run", str(run.pk), stdout=out)

    assert out.getvalue().startswith(f"run {run.pk} running")
    assert [kwargs["chunk_id"] for _, kwargs in sent()] == [c.pk for c in chunks[1:]]
    with pytest.raises(CommandError, match="only a failed run"):
        call_command("redrive_billing_run", str(run.pk), stdout=out)


def test_the_watchdog_is_a_beat_default_every_minute(db):
    beat_defaults_install()

    task = PeriodicTask.objects.get(name="billing-runs-watchdog")

    assert task.task == "billing.tasks.billing_runs_watchdog_task"
    assert (task.crontab.minute, task.crontab.hour) == ("*", "*")


def test_a_failed_attempt_is_retried_on_the_worker_not_failing_the_run(list_prices, celery_worker):
    catalog_model_create(name="embed-1", tier="embedding")
    customers_with_usage(["a-unpriced"], model="embed-1")
    customers_with_usage(["b-0", "b-1"])

    run = billing_run_create(period=OCT, finalize=True, actor="test", as_of=datetime.now(UTC))
    chunk = wait_for(lambda: BillingRunChunk.objects.filter(run_id=run.pk).exclude(error="").first())
    model_tier_change(model_name="embed-1", tier="nano", effective_from=datetime(2026, 9, 1, tzinfo=UTC))
    wait_for(lambda: BillingRun.objects.filter(pk=run.pk).exclude(status="running").exists())

    run.refresh_from_db()
    chunk.refresh_from_db()
    assert (run.status, run.error, run.customers_done) == ("done", "", 3)
    assert chunk.attempts == 2 and chunk.error == ""
    assert Invoice.objects.filter(period=OCT, status="finalized").count() == 3

