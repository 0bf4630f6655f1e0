"""The --from/--to options shared by the projection commands."""

from datetime import datetime

from django.core.management.base import CommandError

from config.api import is_on_the_hour


def add_period_arguments(parser) -> None:
    parser.add_argument("--from", dest="start", default=None, help="ISO instant, inclusive (default: the beginning)")
    parser.add_argument("--to", dest="end", default=None, help="ISO instant, exclusive (default: no end)")


def period_from_options(options) -> tuple[datetime | None, datetime | None]:
    def parse(value):
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise CommandError(f"Not an ISO date or instant: {value!r}") from exc
        if moment.tzinfo is None:
            raise CommandError(f"Give an offset (e.g. Z) with {value!r}: periods are instants.")
        if not is_on_the_hour(moment):
            raise CommandError(f"{value!r} is not on an hour boundary: rollups are hourly.")
        return moment

    return parse(options["start"]), parse(options["end"])
