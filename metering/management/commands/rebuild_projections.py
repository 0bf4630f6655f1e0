"""python manage.py rebuild_projections [--from ISO] [--to ISO]"""

from django.core.management.base import BaseCommand

from metering.management.commands._period import add_period_arguments, period_from_options
from billing.services.spend import spends_forget
from metering.services import utc_now
from metering.projections import rollups_rebuild, segments_rebuild


class Command(BaseCommand):
    help = "Rebuild the hourly rollups of a period from the ledger, then its months' usage segments."

    def add_arguments(self, parser):
        add_period_arguments(parser)

    def handle(self, *args, **options):
        start, end = period_from_options(options)
        rows = rollups_rebuild(start=start, end=end)
        self.stdout.write(f"rebuilt {rows} hourly rollup row(s)")
        segments = segments_rebuild(start=start, end=end)
        spends_forget(customer_ids=None, as_of=utc_now())  # live balances are recomputed from the new segments on their next read
        self.stdout.write(f"rebuilt {segments} usage segment(s)")
