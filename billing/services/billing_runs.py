"""Billing runs: which customers a period bills, in chunks, with progress on the run.

A run is `pending` until a worker counts its customers and splits them into chunks, then
`running` until every chunk is counted done (`done`), or `failed` once a chunk has used up
BILLING_CHUNK_ATTEMPTS_MAX attempts (or counting the customers raised). A failed run is
re-driven with `billing_run_redrive`; a new run of the same period works too, since every
chunk is idempotent.

Worker loss. A chunk's work is idempotent: drafts are recomputed and only drafts are
finalized, under the customers' row locks, and progress is counted once (`done_at`). So
a chunk may be sent any number of times; what must not happen is that it is never sent
again. Three things see to it:
- `billing_run_chunk_task` rejects (requeues) its message when its worker process dies
  (`reject_on_worker_lost`): a lost prefork child costs seconds.
- Each attempt holds a session-level Postgres advisory lock on its chunk for as long as
  it runs. Postgres drops it the moment the attempt's connection goes (the process was
  killed, the host went down), so "not done and not locked" means nobody is working on it.
- `billing_runs_watchdog` (beat, every minute) sends again every chunk of a running run
  that is not done, not locked, and was dispatched or begun more than
  BILLING_CHUNK_DEADLINE_SECONDS ago (a chunk still queued behind live work of its run is
  left alone), and restarts runs still pending after that long. This covers a lost main
  worker process, whose unacknowledged messages Redis would return only after the
  visibility timeout (hours).
An attempt that finds its chunk locked by a live attempt, or already done, does nothing.
"""

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Max

from billing.models import BillingRun, BillingRunChunk, Invoice
from billing.selectors import month_bounds
from billing.services.audit import audit_record
from billing.services.invoices import invoice_drafts_refresh, invoices_issue, period_start_of
from config.api import DomainError

CHUNK_LOCK_NAMESPACE = 0x6B1C  # first key of pg_try_advisory_lock(int, int); the chunk id is the second
CHUNK_LOCK_WAIT_S = 10  # a redelivered attempt may arrive before Postgres has noticed the old one is gone


class BillingRunNotFailed(DomainError):
    code = "billing_run_not_failed"
    status = 409
    title = "Only a failed billing run can be re-driven"


class BillingRunChunkRetry(Exception):
    """An attempt failed and the chunk has attempts left: try again after `countdown_s`."""

    def __init__(self, *, attempt: int, error: str):
        super().__init__(f"attempt {attempt} failed: {error}")
        self.attempt, self.error = attempt, error
        self.countdown_s = min(5 * 2 ** (attempt - 1), 60)

RUN_CUSTOMERS_SQL = """
SELECT DISTINCT customer_id FROM (
    SELECT customer_id FROM metering_hourly_rollup WHERE hour >= %(lookback)s AND hour < %(end)s
    UNION ALL
    SELECT c.customer_id FROM billing_contract k JOIN metering_customer c ON c.id = k.customer_id
    WHERE k.effective_from < %(end)s AND (k.effective_to IS NULL OR k.effective_to > %(start)s)
    UNION ALL
    SELECT c.customer_id FROM billing_reservation r JOIN metering_customer c ON c.id = r.customer_id
    WHERE r.starts_at < %(end)s AND (r.ends_at IS NULL OR r.ends_at > %(start)s)
    UNION ALL
    SELECT c.customer_id FROM billing_rental r JOIN metering_customer c ON c.id = r.customer_id
    WHERE r.starts_at < %(end)s AND (r.ends_at IS NULL OR r.ends_at > %(start)s)
    UNION ALL
    SELECT c.customer_id FROM billing_invoice i JOIN metering_customer c ON c.id = i.customer_id
    WHERE i.period = %(period)s AND i.status = 'draft'
) AS billable
ORDER BY customer_id
"""


def billing_run_customers(*, period: date) -> list[str]:
    """Customers with usage in the period or late usage before it, a contract, a reservation
    or a rental in force, or a draft to refresh."""
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
        return list(run.chunks.filter(done_at__isnull=True).order_by("number").values_list("pk", flat=True))
    customers = billing_run_customers(period=run.period)
    size = settings.BILLING_CHUNK_CUSTOMERS
    chunks = BillingRunChunk.objects.bulk_create(
        BillingRunChunk(run=run, number=n, customer_ids=customers[i:i + size], dispatched_at=as_of)
        for n, i in enumerate(range(0, len(customers), size)))
    run.status = BillingRun.Status.RUNNING if customers else BillingRun.Status.DONE
    run.started_at, run.customers_total, run.finished_at = as_of, len(customers), None if customers else as_of
    run.save(update_fields=["status", "started_at", "customers_total", "finished_at"])
    return [chunk.pk for chunk in chunks]


@contextmanager
def _chunk_lock(chunk_id: int, *, wait_s: float) -> Iterator[bool]:
    """Hold the chunk's advisory lock on this connection's session (True), or say another
    session holds it (False) after waiting up to `wait_s`."""
    key = (CHUNK_LOCK_NAMESPACE, chunk_id % 2 ** 31)
    deadline = time.monotonic() + wait_s
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        while not cursor.fetchone()[0]:
            if time.monotonic() >= deadline:
                yield False
                return
            time.sleep(0.2)
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
    try:
        yield True
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        except DatabaseError:
            if connection.in_atomic_block:
                raise
            connection.close()  # a lock left on a pooled session would make the chunk look live for good


def billing_run_chunk(*, chunk_id: int, as_of: datetime) -> str:
    """One attempt at a chunk: refresh (and, for a finalizing run, finalize) the invoices of
    its customers; count it done the first time it completes. Returns what happened: done,
    done already, busy (a live attempt holds it) or abandoned (out of attempts). Raises
    BillingRunChunkRetry when the attempt failed with attempts left, and the error itself,
    after marking the run failed, when it was the last."""
    with _chunk_lock(chunk_id, wait_s=CHUNK_LOCK_WAIT_S) as held:
        if not held:
            return "busy"
        return _chunk_attempt(chunk_id=chunk_id, as_of=as_of)


def _chunk_attempt(*, chunk_id: int, as_of: datetime) -> str:
    chunk = BillingRunChunk.objects.select_related("run").get(pk=chunk_id)
    run, customer_ids = chunk.run, chunk.customer_ids
    if chunk.done_at is not None:
        return "done already"  # a redelivered or re-sent task
    if chunk.attempts >= settings.BILLING_CHUNK_ATTEMPTS_MAX:
        _run_fail_for_chunk(chunk, as_of=as_of)
        return "abandoned"
    attempt = chunk.attempts + 1
    BillingRunChunk.objects.filter(pk=chunk_id).update(attempts=attempt, started_at=as_of,
                                                       worker=f"{socket.gethostname()}:{os.getpid()}")
    try:
        invoice_drafts_refresh(customer_ids=customer_ids, period=run.period, as_of=as_of)
        if run.finalize:
            invoices_issue(customer_ids=customer_ids, period=run.period, actor=f"billing-run:{run.pk}", as_of=as_of)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        BillingRunChunk.objects.filter(pk=chunk_id).update(error=error[:5000])
        if attempt < settings.BILLING_CHUNK_ATTEMPTS_MAX:
            raise BillingRunChunkRetry(attempt=attempt, error=error) from exc
        chunk.attempts, chunk.error = attempt, error
        _run_fail_for_chunk(chunk, as_of=as_of)
        raise
    _chunk_count_done(chunk, as_of=as_of)
    return "done"


def _chunk_count_done(chunk: BillingRunChunk, *, as_of: datetime) -> None:
    with transaction.atomic():
        if not BillingRunChunk.objects.filter(pk=chunk.pk, done_at__isnull=True).update(done_at=as_of, error=""):
            return  # counted already
        BillingRun.objects.filter(pk=chunk.run_id).update(customers_done=F("customers_done") + len(chunk.customer_ids))
        run = BillingRun.objects.select_for_update().get(pk=chunk.run_id)
        if run.customers_done == run.customers_total and run.status == BillingRun.Status.RUNNING:
            run.status, run.finished_at = BillingRun.Status.DONE, as_of
            run.save(update_fields=["status", "finished_at"])


def _run_fail_for_chunk(chunk: BillingRunChunk, *, as_of: datetime) -> None:
    reason = chunk.error or "its worker was lost each time"
    billing_run_fail(run_id=chunk.run_id, as_of=as_of,
                     error=f"chunk {chunk.number} gave up after {chunk.attempts} attempts: {reason}")


def billing_run_fail(*, run_id: int, error: str, as_of: datetime) -> None:
    """Mark a run failed, unless it is done. Its other chunks still finish and count."""
    BillingRun.objects.filter(pk=run_id).exclude(status=BillingRun.Status.DONE).update(
        status=BillingRun.Status.FAILED, error=error[:5000], finished_at=as_of)


def _chunk_stale(chunk: BillingRunChunk, *, run_active_at: datetime | None, as_of: datetime,
                 deadline: timedelta) -> bool:
    """Dispatched or begun longer than the deadline ago. A chunk not begun since it was
    dispatched is only waiting in the queue while other chunks of its run make progress."""
    touched = max((t for t in (chunk.dispatched_at, chunk.started_at) if t is not None), default=None)
    if touched is not None and as_of - touched < deadline:
        return False
    begun = chunk.started_at is not None and (chunk.dispatched_at is None or chunk.started_at >= chunk.dispatched_at)
    return begun or run_active_at is None or as_of - run_active_at >= deadline


def _chunk_redispatch(chunk: BillingRunChunk, *, as_of: datetime) -> bool:
    """Send the chunk again if no attempt holds it and no other watchdog just did."""
    from billing.tasks import billing_run_chunk_task

    with _chunk_lock(chunk.pk, wait_s=0) as free:
        if not free:
            return False  # a live attempt: let it finish
        if chunk.attempts >= settings.BILLING_CHUNK_ATTEMPTS_MAX:
            _run_fail_for_chunk(chunk, as_of=as_of)
            return False
        claimed = BillingRunChunk.objects.filter(pk=chunk.pk, done_at__isnull=True,
                                                 dispatched_at=chunk.dispatched_at).update(dispatched_at=as_of)
    if claimed:
        billing_run_chunk_task.delay(run_id=chunk.run_id, chunk_id=chunk.pk)
    return bool(claimed)


def billing_runs_watchdog(*, as_of: datetime) -> list[int]:
    """Beat's safety net for lost tasks (see the module docstring): restart runs pending for
    longer than the deadline, send again the lost chunks of running runs. Safe to run
    while chunks are under way, and twice at once. Returns the chunks sent again."""
    from billing.tasks import billing_run_start_task

    deadline = timedelta(seconds=settings.BILLING_CHUNK_DEADLINE_SECONDS)
    for run_id in BillingRun.objects.filter(status=BillingRun.Status.PENDING,
                                            created_at__lt=as_of - deadline).values_list("pk", flat=True):
        billing_run_start_task.delay(run_id=run_id)
    sent = []
    for run in BillingRun.objects.filter(status=BillingRun.Status.RUNNING).order_by("pk"):
        activity = run.chunks.aggregate(started=Max("started_at"), done=Max("done_at"))
        run_active_at = max((t for t in activity.values() if t is not None), default=None)
        for chunk in run.chunks.filter(done_at__isnull=True).order_by("number"):
            if _chunk_stale(chunk, run_active_at=run_active_at, as_of=as_of, deadline=deadline) \
                    and _chunk_redispatch(chunk, as_of=as_of):
                sent.append(chunk.pk)
    return sent


@transaction.atomic
def billing_run_redrive(*, run_id: int, actor: str, as_of: datetime) -> BillingRun:
    """Take a failed run up again: its chunks not done get fresh attempts and are sent
    again (a run that failed before it was split is started again). Audited."""
    from billing.tasks import billing_run_chunk_task, billing_run_start_task

    run = BillingRun.objects.select_for_update().get(pk=run_id)
    if run.status != BillingRun.Status.FAILED:
        raise BillingRunNotFailed(f"Billing run {run.pk} is {run.status}; only a failed run can be re-driven.")
    before = {"status": run.status, "error": run.error}
    undone = list(run.chunks.filter(done_at__isnull=True).order_by("number").values_list("pk", flat=True))
    BillingRunChunk.objects.filter(pk__in=undone).update(attempts=0, error="", dispatched_at=as_of)
    split = run.chunks.exists()
    if not split:
        run.status = BillingRun.Status.PENDING
    elif undone:
        run.status = BillingRun.Status.RUNNING
    else:
        run.status = BillingRun.Status.DONE
    run.error, run.finished_at = "", as_of if run.status == BillingRun.Status.DONE else None
    run.save(update_fields=["status", "error", "finished_at"])
    audit_record(actor=actor, action="billing_run.redrive", obj=run, before=before, at=as_of,
                 after={"status": run.status, "chunks_sent": len(undone)})
    if not split:
        transaction.on_commit(lambda: billing_run_start_task.delay(run_id=run.pk))
    for chunk_id in undone:
        transaction.on_commit(lambda pk=chunk_id: billing_run_chunk_task.delay(run_id=run.pk, chunk_id=pk))
    return run


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
