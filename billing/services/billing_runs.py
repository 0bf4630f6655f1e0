"""Billing runs: which customers a period bills, in chunks, with progress on the run."""

from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from billing.models import BillingRun, BillingRunChunk, Invoice
from billing.selectors import month_bounds
from billing.services.audit import audit_record
from billing.services.invoices import invoice_drafts_refresh, invoices_issue, period_start_of

RUN_CUSTOMERS_SQL = """
SELECT DISTINCT customer_id FROM (
    SELECT customer_id FROM metering_hourly_rollup WHERE hour >= %(lookback)s AND hour < %(end)s
    UNION ALL
    SELECT c.customer_id FROM billing_contract k JOIN metering_customer c ON c.id = k.customer_id
    WHERE k.effective_from < %(end)s AND (k.effective_to IS NULL OR k.effective_to > %(start)s)
    UNION ALL
    SELECT c.customer_id FROM billing_invoice i JOIN metering_customer c ON c.id = i.customer_id
    WHERE i.period = %(period)s AND i.status = 'draft'
) AS billable
ORDER BY customer_id
"""


def billing_run_customers(*, period: date) -> list[str]:
    """Customers with usage in the period or late usage before it, a contract in force, or
    a draft to refresh."""
    start, end = month_bounds(period_start_of(period))
    with connection.cursor() as cursor:
        cursor.execute(RUN_CUSTOMERS_SQL, {"lookback": start - timedelta(days=92), "start": start, "end": end,
                                           "period": period})
        return [row[0] for row in cursor.fetchall()]


@transaction.atomic
def billing_run_create(*, period: date, finalize: bool, actor: str, as_of: datetime) -> BillingRun:
    """Record a run and start it on a Celery worker once this transaction commits."""
    from billing.tasks import billing_run_start_task

    run = BillingRun.objects.create(period=period.replace(day=1), finalize=finalize, requested_by=actor,
                                    created_at=as_of)
    audit_record(actor=actor, action="billing_run.create", obj=run, before=None, at=as_of,
                 after={"period": f"{run.period:%Y-%m}", "finalize": finalize})
    transaction.on_commit(lambda: billing_run_start_task.delay(run_id=run.pk))
    return run


@transaction.atomic
def billing_run_start(*, run_id: int, as_of: datetime) -> list[int]:
    """Count the customers, split them into chunks, mark the run running; returns the chunk
    ids. Started twice, it hands out the same chunks."""
    run = BillingRun.objects.select_for_update().get(pk=run_id)
    if run.status != BillingRun.Status.PENDING:
        return list(run.chunks.filter(done_at__isnull=True).values_list("pk", flat=True))
    customers = billing_run_customers(period=run.period)
    size = settings.BILLING_CHUNK_CUSTOMERS
    chunks = BillingRunChunk.objects.bulk_create(
        BillingRunChunk(run=run, number=n, customer_ids=customers[i:i + size])
        for n, i in enumerate(range(0, len(customers), size)))
    run.status = BillingRun.Status.RUNNING if customers else BillingRun.Status.DONE
    run.started_at, run.customers_total, run.finished_at = as_of, len(customers), None if customers else as_of
    run.save(update_fields=["status", "started_at", "customers_total", "finished_at"])
    return [chunk.pk for chunk in chunks]


def billing_run_chunk(*, chunk_id: int, as_of: datetime) -> None:
    """Refresh (and, for a finalizing run, finalize) the invoices of a chunk; count it done
    the first time it completes."""
    chunk = BillingRunChunk.objects.select_related("run").get(pk=chunk_id)
    run, customer_ids = chunk.run, chunk.customer_ids
    invoice_drafts_refresh(customer_ids=customer_ids, period=run.period, as_of=as_of)
    if run.finalize:
        invoices_issue(customer_ids=customer_ids, period=run.period, actor=f"billing-run:{run.pk}", as_of=as_of)
    with transaction.atomic():
        if not BillingRunChunk.objects.filter(pk=chunk_id, done_at__isnull=True).update(done_at=as_of):
            return  # a redelivered task: counted already
        BillingRun.objects.filter(pk=run.pk).update(customers_done=F("customers_done") + len(customer_ids))
        run = BillingRun.objects.select_for_update().get(pk=run.pk)
        if run.customers_done == run.customers_total and run.status == BillingRun.Status.RUNNING:
            run.status, run.finished_at = BillingRun.Status.DONE, as_of
            run.save(update_fields=["status", "finished_at"])


def billing_run_fail(*, run_id: int, error: str, as_of: datetime) -> None:
    BillingRun.objects.filter(pk=run_id).update(status=BillingRun.Status.FAILED, error=error[:5000], finished_at=as_of)


def billing_cycle(*, as_of: datetime) -> list[BillingRun]:
    """The daily schedule: refresh this period's drafts; refresh last period's drafts until
    its grace period is over, then finalize them."""
    current = month_bounds(as_of)[0]
    previous = month_bounds(current - timedelta(days=1))[0]
    grace_over = as_of >= current + timedelta(hours=settings.BILLING_GRACE_HOURS)
    runs = [billing_run_create(period=current.date(), finalize=False, actor="schedule", as_of=as_of)]
    if not grace_over or Invoice.objects.filter(period=previous.date(), status=Invoice.Status.DRAFT).exists():
        runs.append(billing_run_create(period=previous.date(), finalize=grace_over, actor="schedule", as_of=as_of))
    return runs
