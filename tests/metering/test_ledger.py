"""The ledger's invariants as Postgres enforces them, and the projection commands."""

from datetime import date
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError

from metering.consumer.steps import Accepted, Coordinates
from metering.models import HourlyRollup, UsageEvent
from metering.schemas import Catalog, Rules, event_validate
from metering.services import ledger_append, ledger_partitions_ensure
from tests.conftest import utc
from tests.metering.factories import event

CATALOG = Catalog(customers=frozenset({"acme"}), models=frozenset({"gpt-5.4", "gpt-5.4-mini"}))


def accepted(*bodies, offset: int = 0) -> list[Accepted]:
    arrived = utc(2026, 11, 22, 12)
    rules = Rules(arrived_at=arrived, lateness=utc(2026, 11, 22) - utc(2026, 9, 1))
    return [Accepted(event_validate(b, catalog=CATALOG, rules=rules), Coordinates("t", 0, offset + i, -1), arrived)
            for i, b in enumerate(bodies)]


@pytest.mark.django_db
class TestAppendOnly:
    def test_update_and_delete_by_raw_sql_are_rejected(self):
        ledger_append(accepted=accepted(event(timestamp="2026-11-02T10:00:00Z")))

        for statement in ("UPDATE metering_usage_event SET output_tokens = 0",
                          "DELETE FROM metering_usage_event",
                          "UPDATE metering_usage_event_y2026m11 SET model = 'x'"):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(statement)

        assert UsageEvent.objects.get().output_tokens == 412

    def test_events_land_in_the_partition_of_their_month(self):
        ledger_append(accepted=accepted(event(timestamp="2026-10-31T23:59:59.999Z"),
                                        event(timestamp="2026-11-01T00:00:00Z")))

        with connection.cursor() as cursor:
            cursor.execute("SELECT tableoid::regclass::text, count(*) FROM metering_usage_event GROUP BY 1 ORDER BY 1")
            assert cursor.fetchall() == [("metering_usage_event_y2026m10", 1), ("metering_usage_event_y2026m11", 1)]

    def test_partitions_are_created_once(self):
        first = ledger_partitions_ensure(months=[date(2031, 1, 1), date(2031, 2, 1)])
        again = ledger_partitions_ensure(months=[date(2031, 1, 15)])

        assert first == ["metering_usage_event_y2031m01", "metering_usage_event_y2031m02"]
        assert again == []

    def test_the_same_event_id_is_appended_once_across_batches(self):
        body = event(timestamp="2026-11-02T10:00:00Z")

        first = ledger_append(accepted=accepted(body))
        second = ledger_append(accepted=accepted(body, offset=10))

        assert (first.appended, second.appended, second.duplicates) == (1, 0, 1)
        assert UsageEvent.objects.filter(event_id=body["event_id"]).count() == 1


@pytest.mark.django_db
class TestProjections:
    def test_verify_finds_every_difference_and_rebuild_repairs_them(self):
        ledger_append(accepted=accepted(event(timestamp="2026-11-02T10:05:00Z"),
                                        event(timestamp="2026-11-02T10:55:00Z", model="gpt-5.4-mini"),
                                        event(timestamp="2026-11-03T08:00:00Z")))
        assert call_command_exit("verify_projections") == (0, "agree")
        HourlyRollup.objects.filter(model="gpt-5.4-mini").update(output_tokens=1)
        HourlyRollup.objects.filter(hour=utc(2026, 11, 3, 8)).delete()
        HourlyRollup.objects.create(customer_id="acme", model="gpt-5.4", service_tier="batch", region="", cluster="",
                                    hour=utc(2026, 11, 4), events=1, input_tokens=1, cached_input_tokens=0,
                                    output_tokens=1)

        code, output = call_command_exit("verify_projections", "--from", "2026-11-01T00:00:00Z")
        call_command("rebuild_projections", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z",
                     stdout=StringIO())

        assert code == 1 and output.count("ledger=") == 3  # the usage segments were never touched
        assert "rollup=None" in output and "ledger=None" in output and "usage segment" not in output
        assert call_command_exit("verify_projections") == (0, "agree")

    def test_verify_rejects_a_period_not_on_the_hour(self):
        with pytest.raises(Exception, match="hour boundary"):
            call_command("verify_projections", "--from", "2026-11-01T00:30:00Z")


def call_command_exit(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command(*args, stdout=out, stderr=StringIO())
    except SystemExit as exit_:
        return exit_.code, out.getvalue()
    return 0, "agree" if "agree" in out.getvalue() else out.getvalue()
