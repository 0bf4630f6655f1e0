"""python manage.py redrive_billing_run RUN_ID: take a failed billing run up again on the workers."""

from django.core.management.base import BaseCommand, CommandError

from billing.models import BillingRun
from billing.services.billing_runs import BillingRunNotFailed, billing_run_redrive
from metering.services import utc_now


class Command(BaseCommand):
    help = "Re-drive a failed billing run: its chunks not done get fresh attempts and are sent to the workers."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, run_id, **options):
        try:
            run = billing_run_redrive(run_id=run_id, actor="command:redrive_billing_run", as_of=utc_now())
        except BillingRun.DoesNotExist as exc:
            raise CommandError(f"No billing run {run_id}.") from exc
        except BillingRunNotFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"run {run.pk} {run.status}: {run.customers_done} / {run.customers_total} customers done")
