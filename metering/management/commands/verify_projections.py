"""python manage.py verify_projections [--from ISO] [--to ISO]: exit 1 on any difference."""

import sys

from django.core.management.base import BaseCommand

from metering.management.commands._period import add_period_arguments, period_from_options
from metering.projections import rollup_differences, segment_differences


class Command(BaseCommand):
    help = "Recompute the hourly rollups from the ledger, the usage segments from the rollups; print every difference."

    def add_arguments(self, parser):
        add_period_arguments(parser)

    def handle(self, *args, **options):
        start, end = period_from_options(options)
        differences = rollup_differences(start=start, end=end)
        segments = segment_differences(start=start, end=end)
        for difference in [*differences, *segments]:
            self.stdout.write(str(difference))
        if differences or segments:
            self.stderr.write(f"{len(differences)} rollup row(s) differ from the ledger, "
                              f"{len(segments)} usage segment(s) from the rollups.")
            sys.exit(1)
        self.stdout.write("hourly rollups agree with the ledger")
        self.stdout.write("usage segments agree with the rollups")
