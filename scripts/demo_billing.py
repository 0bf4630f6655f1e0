"""The demo's invoicing step: a billing run on a real Celery worker, finalized, one credit
note, the PDFs written to a folder, and the invoice table."""

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def celery_worker_start(queue: str) -> subprocess.Popen:
    """A real worker process (2 children) on Redis, consuming only this demo's queue."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "2", "-l", "warning",
         "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=dict(os.environ, CELERY_TASK_DEFAULT_QUEUE=queue), stdout=subprocess.DEVNULL,
        stderr=open(ROOT / "var" / "demo-celery.log", "ab"),
    )


def billing_run_watch(run_id: int) -> None:
    from tqdm import tqdm

    from billing.models import BillingRun

    with tqdm(unit="customer", desc="billing run", file=sys.stdout, mininterval=0.5) as bar:
        while True:
            run = BillingRun.objects.get(pk=run_id)
            bar.total = run.customers_total or None
            bar.update(run.customers_done - bar.n)
            if run.status in (BillingRun.Status.DONE, BillingRun.Status.FAILED):
                break
            time.sleep(0.3)
    if run.status == BillingRun.Status.FAILED:
        sys.exit(f"billing run {run_id} failed: {run.error}")


def invoices_issue(*, period_start: datetime, as_of: datetime) -> None:
    from config.celery import app

    from billing.documents import credit_note_pdf, invoice_pdf
    from billing.models import Invoice
    from billing.services.billing_runs import billing_run_create
    from billing.services.invoices import credit_note_issue

    queue = f"demo-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    worker = celery_worker_start(queue)
    try:
        run = billing_run_create(period=period_start.date(), finalize=True, actor="demo", as_of=as_of)
        print(f"billing run {run.pk} for {period_start:%Y-%m} (finalize) sent to a Celery worker on Redis, "
              f"queue {queue}")
        billing_run_watch(run.pk)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    invoices = list(Invoice.objects.filter(period=period_start.date()).select_related("customer").order_by("number"))
    largest = max(invoices, key=lambda invoice: invoice.total)
    note = credit_note_issue(invoice_id=largest.pk, amount=(largest.total / 10).quantize(Decimal("0.01")),
                             reason="service credit: degraded latency on 2 days", actor="demo", as_of=as_of)
    folder = ROOT / "var" / "demo-invoices"
    folder.mkdir(parents=True, exist_ok=True)
    for invoice in invoices:
        (folder / f"{invoice.number}.pdf").write_bytes(invoice_pdf(invoice))
    (folder / f"{note.number}.pdf").write_bytes(credit_note_pdf(note))
    print(f"\n{'number':16} {'customer':10} {'period':8} {'status':10} {'lines':>5} {'total':>11} {'credited':>9}")
    for invoice in invoices:
        credited = sum((n.amount for n in invoice.credit_notes.all()), Decimal(0))
        print(f"{invoice.number:16} {invoice.customer.customer_id:10} {invoice.period:%Y-%m}  {invoice.status:10} "
              f"{invoice.lines.count():>5} {invoice.total:>11.2f} {credited:>9.2f}")
    print(f"{'':49} {sum(i.total for i in invoices):>11.2f}")
    print(f"credit note {note.number}: {note.amount:.2f} on {largest.number} ({note.reason})")
    print(f"PDFs: {folder}/ ({len(invoices)} invoices, 1 credit note)")
