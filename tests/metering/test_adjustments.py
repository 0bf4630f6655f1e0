"""Usage adjustments (DESIGN.md §6): over REST and through Kafka, append-only, applied in
the adjusted event's hour, idempotent by adjustment_id, and scoped by customer."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from billing.models import AuditEntry
from metering.adjustment_rules import adjustment_validate
from metering.models import DeadLetter, HourlyRollup, UsageAdjustment, UsageDuplicate
from metering.projections import rollup_differences, rollups_rebuild
from metering.consumer.steps import Accepted, Coordinates
from metering.schemas import Catalog, Rules, event_validate
from metering.services import ledger_append, utc_now
from tests.metering.factories import event
from tests.metering.kafka_helpers import send

CATALOG = Catalog(customers=frozenset({"acme", "globex"}), models=frozenset({"gpt-5.4"}))


def accepted(*bodies) -> list[Accepted]:
    """Events as the consumer accepts them, arriving now."""
    now = utc_now()
    rules = Rules(arrived_at=now, lateness=timedelta(days=35))
    return [Accepted(event_validate(b, catalog=CATALOG, rules=rules), Coordinates("t", 0, i, -1), now)
            for i, b in enumerate(bodies)]


def adjustment(body: dict, **overrides) -> dict:
    payload = {"adjustment_id": f"adj-{body['event_id']}", "customer_id": body["customer_id"],
               "event_id": body["event_id"], "action": "void", "reason": "test traffic"}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not ...}


def rollup(body: dict) -> HourlyRollup | None:
    return HourlyRollup.objects.filter(customer_id=body["customer_id"], model=body["model"],
                                       cluster=body["cluster"]).first()


class TestRules:
    def test_a_replacement_follows_the_event_rules(self):
        body = adjustment(event(), action="replace", replacement={"input_tokens": 10, "cached_input_tokens": 11,
                                                                   "output_tokens": 3})

        verdict = adjustment_validate(body, catalog=CATALOG)

        assert verdict.reason == "cached_exceeds_input"
        assert "replacement.cached_input_tokens" in verdict.errors

    def test_a_void_takes_no_replacement_and_every_field_is_checked(self):
        bad = adjustment_validate(adjustment(event(), replacement={"input_tokens": 1, "output_tokens": 1},
                                             reason=""), catalog=CATALOG)
        unknown = adjustment_validate(adjustment(event(), action="undo", colour="red"), catalog=CATALOG)

        assert set(bad.errors) == {"replacement", "reason"}
        assert set(unknown.errors) == {"non_field_errors", "action"}

    def test_a_replacement_gets_every_token_field(self):
        verdict = adjustment_validate(adjustment(event(), action="replace",
                                                 replacement={"input_tokens": 5, "output_tokens": 2}), catalog=CATALOG)

        assert verdict.replacement == {"input_tokens": 5, "cached_input_tokens": 0, "output_tokens": 2,
                                       "cache_write_tokens": 0, "cache_write_long_tokens": 0,
                                       "audio_input_tokens": 0, "audio_output_tokens": 0, "reasoning_tokens": 0}


@pytest.mark.django_db
class TestRest:
    def test_void_then_replace_apply_in_the_events_hour(self, catalog, api_client_for):
        first, second = event(input_tokens=1000, cached_input_tokens=0), event(input_tokens=500, cached_input_tokens=0)
        ledger_append(accepted=accepted(first, second))
        client = api_client_for("ingest")

        voided = client.post("/api/v1/usage-adjustments", adjustment(first), format="json")
        replaced = client.post("/api/v1/usage-adjustments", adjustment(
            second, action="replace", replacement={"input_tokens": 800, "output_tokens": 10}), format="json")

        assert voided.status_code == 201, voided.content
        assert voided.json()["difference"]["events"] == -1
        assert replaced.status_code == 201
        assert replaced.json()["difference"]["input_tokens"] == 300
        kept = rollup(first)
        assert (kept.events, kept.input_tokens, kept.output_tokens) == (1, 800, 10)
        assert rollup_differences(start=None, end=None) == []
        assert AuditEntry.objects.filter(action__startswith="usage_adjustment.").count() == 2

    def test_repeat_answers_200_conflict_409_unknown_and_voided_422(self, catalog, api_client_for):
        body = event()
        ledger_append(accepted=accepted(body))
        client = api_client_for("ingest")
        created = client.post("/api/v1/usage-adjustments", adjustment(body), format="json")

        repeat = client.post("/api/v1/usage-adjustments", adjustment(body), format="json")
        conflict = client.post("/api/v1/usage-adjustments", adjustment(body, reason="another"), format="json")
        voided = client.post("/api/v1/usage-adjustments", adjustment(body, adjustment_id="adj-2"), format="json")
        unknown = client.post("/api/v1/usage-adjustments", adjustment(body, adjustment_id="adj-3", event_id="nope"),
                              format="json")

        assert (created.status_code, repeat.status_code) == (201, 200)
        assert repeat.json()["id"] == created.json()["id"]
        assert conflict.status_code == 409
        assert conflict["Content-Type"] == "application/problem+json"
        assert DeadLetter.objects.get(reason="conflicting_adjustment").existing_payload["reason"] == "test traffic"
        assert (voided.status_code, voided.json()["type"].rsplit("/", 1)[1]) == (422, "adjustment_event_voided")
        assert (unknown.status_code, unknown.json()["type"].rsplit("/", 1)[1]) == (422, "adjustment_event_unknown")
        assert UsageAdjustment.objects.filter(customer_id="acme").count() == 1
        assert rollup(body) is None  # its only event voided

    def test_invalid_body_is_422_with_field_errors(self, catalog, api_client_for):
        response = api_client_for("ingest").post("/api/v1/usage-adjustments", {"adjustment_id": "x"}, format="json")

        assert response.status_code == 422
        assert {"customer_id", "event_id", "action", "reason"} <= set(response.json()["errors"])

    def test_customer_key_lists_its_own_and_cannot_post(self, catalog, api_client_for):
        acme, globex = event(), event(customer_id="globex")
        ledger_append(accepted=accepted(acme, globex))
        admin = api_client_for("admin")
        admin.post("/api/v1/usage-adjustments", adjustment(acme), format="json")
        admin.post("/api/v1/usage-adjustments", adjustment(globex), format="json")
        mine = api_client_for("customer", "acme")

        listed = mine.get("/api/v1/usage-adjustments").json()["results"]
        asked_for_other = mine.get("/api/v1/usage-adjustments?customer_id=globex").json()["results"]
        posted = mine.post("/api/v1/usage-adjustments", adjustment(acme, adjustment_id="z"), format="json")
        ingest_lists = api_client_for("ingest").get("/api/v1/usage-adjustments")

        assert [a["customer_id"] for a in listed] == ["acme"]
        assert asked_for_other == []
        assert posted.status_code == 403
        assert ingest_lists.status_code == 403

    def test_adjustments_are_append_only(self, catalog, api_client_for):
        body = event()
        ledger_append(accepted=accepted(body))
        api_client_for("ingest").post("/api/v1/usage-adjustments", adjustment(body), format="json")

        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("UPDATE metering_usage_adjustment SET reason = 'edited'")

    def test_rebuild_from_ledger_and_adjustments_keeps_the_rollups(self, catalog, api_client_for):
        body, other = event(input_tokens=2000, cached_input_tokens=0), event(input_tokens=100, cached_input_tokens=0)
        ledger_append(accepted=accepted(body, other))
        api_client_for("ingest").post("/api/v1/usage-adjustments", adjustment(
            body, action="replace", replacement={"input_tokens": 20, "output_tokens": 1}), format="json")
        before = list(HourlyRollup.objects.values_list("events", "input_tokens", "output_tokens"))

        rollups_rebuild(start=None, end=None)

        assert list(HourlyRollup.objects.values_list("events", "input_tokens", "output_tokens")) == before
        assert before == [(2, 120, 1 + other["output_tokens"])]


@pytest.mark.django_db(transaction=True)
class TestKafka:
    def test_adjustments_on_the_usage_topic_and_a_replay(self, catalog, topics, producer, drain):
        first, second = event(timestamp=(utc_now() - timedelta(hours=2)).isoformat()), event()
        for body in (first, second):
            send(producer, topics["usage"], body)
        replace = adjustment(second, action="replace", replacement={"input_tokens": 7, "output_tokens": 7})
        send(producer, topics["usage"], [adjustment(first), replace])
        send(producer, topics["usage"], replace)  # an exact repeat
        send(producer, topics["usage"], dict(replace, reason="other"))  # a conflicting one
        send(producer, topics["usage"], adjustment(first, adjustment_id="again"))  # of a voided event
        send(producer, topics["usage"], adjustment(first, adjustment_id="x", event_id="missing"))
        producer.flush()

        stats = drain()
        replay = drain(group=topics["group"] + "-replay")

        assert stats.adjustments == 1 + 1 and replay.adjustments == 0
        assert UsageAdjustment.objects.count() == 2
        assert UsageDuplicate.objects.filter(adjustment_id=replace["adjustment_id"]).count() == 1
        assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == [
            "adjustment_event_unknown", "adjustment_event_voided", "conflicting_adjustment"]
        assert rollup_differences(start=None, end=None) == []
        assert UsageAdjustment.objects.get(event_id=second["event_id"]).actor == f"kafka:{topics['usage']}"
