"""python manage.py rebuild_projections [--from ISO] [--to ISO]"""

from django.core.management.base import BaseCommand

from metering.management.commands._period import add_period_arguments, period_from_options
from metering.projections import rollups_rebuild


class Command(BaseCommand):
    help = "Rebuild the hourly rollups of a period from the ledger."

    def add_arguments(self, parser):
        add_period_arguments(parser)

    def handle(self, *args, **options):
        start, end = period_from_options(options)
        rows = rollups_rebuild(start=start, end=end)
        self.stdout.write(f"rebuilt {rows} hourly rollup row(s)")
