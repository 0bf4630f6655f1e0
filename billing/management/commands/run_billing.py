"""python manage.py run_billing --period YYYY-MM [--finalize]: one billing run, here and now."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing.models import BillingRun, Invoice
from billing.services.billing_runs import billing_run_chunk, billing_run_start
from metering.services import utc_now


class Command(BaseCommand):
    help = "Run billing for a period synchronously (drafts, and with --finalize, issued invoices)."

    def add_arguments(self, parser):
        parser.add_argument("--period", required=True, help="YYYY-MM")
        parser.add_argument("--finalize", action="store_true")

    def handle(self, *args, period, finalize, **options):
        try:
            year, month = (int(part) for part in period.split("-"))
            month_start = date(year, month, 1)
        except ValueError as exc:
            raise CommandError("--period takes YYYY-MM") from exc
        run = BillingRun.objects.create(period=month_start, finalize=finalize, requested_by="command:run_billing",
                                        created_at=utc_now())
        chunk_ids = billing_run_start(run_id=run.pk, as_of=utc_now())
        run.refresh_from_db()
        with tqdm(total=run.customers_total, unit="customer", desc=f"billing {period}") as bar:
            for chunk_id in chunk_ids:
                billing_run_chunk(chunk_id=chunk_id, as_of=utc_now())
                run.refresh_from_db()
                bar.update(run.customers_done - bar.n)
        invoices = Invoice.objects.filter(period=month_start).exclude(status=Invoice.Status.VOID)
        run.refresh_from_db()
        self.stdout.write(f"run {run.pk} {run.status}: {run.customers_done} customers, "
                          f"{invoices.count()} invoices ({invoices.filter(status='draft').count()} draft)")
