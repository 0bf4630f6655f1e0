"""python manage.py allocate_costs --from ISO --to ISO: (re)allocate every closed hour."""

import math
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from infra_inventory.services import DAY, costs_allocate_days
from metering.services import utc_now


class Command(BaseCommand):
    help = "Allocate hardware and power cost to usage for every closed hour in [from, to)."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="start", required=True)
        parser.add_argument("--to", dest="end", required=True)
        parser.add_argument("--jobs", type=int, default=1, help="processes allocating days side by side")

    def handle(self, *args, start, end, jobs, **options):
        try:
            start_at, end_at = datetime.fromisoformat(start), datetime.fromisoformat(end)
        except ValueError as exc:
            raise CommandError(f"--from and --to take ISO instants: {exc}") from exc
        if start_at.tzinfo is None or end_at.tzinfo is None:
            raise CommandError("Give --from and --to with an offset (e.g. Z).")
        start_at = start_at.replace(minute=0, second=0, microsecond=0)
        closed = utc_now().replace(minute=0, second=0, microsecond=0)
        end_at = min(end_at, closed)  # an open hour may still receive usage
        totals = {"cluster_hours": 0, "allocations": 0, "unplaced_tokens": 0}
        days = costs_allocate_days(start=start_at, end=end_at, as_of=utc_now(), jobs=jobs)
        with tqdm(total=max(math.ceil((end_at - start_at) / DAY), 0), unit="day", desc="allocate") as bar:
            for summary in days:
                for key in totals:
                    totals[key] += getattr(summary, key)
                bar.update(1)
        self.stdout.write(f"allocated {start_at.isoformat()} – {end_at.isoformat()}: "
                          + ", ".join(f"{k}={v}" for k, v in totals.items()))
