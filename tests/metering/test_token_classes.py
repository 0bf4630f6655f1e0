"""The token classes of DESIGN.md §1, provider usage objects and catalog service tiers,
through the real consumer (Kafka → ledger → rollups) and the REST API."""

import json

import pytest
from django.db.models import Sum
from django.urls import reverse

from metering.models import DeadLetter, HourlyRollup, ServiceTier, UsageEvent
from metering.projections import rollup_differences, rollups_rebuild
from metering.token_classes import FIELDS
from tests.metering.factories import event
from tests.metering.kafka_helpers import read_topic, send

pytestmark = pytest.mark.django_db(transaction=True)

NO_TOKENS = {"input_tokens": ..., "cached_input_tokens": ..., "output_tokens": ...}
ANTHROPIC = {"format": "anthropic.messages", "usage": {
    "input_tokens": 40, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 1200, "output_tokens": 300,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 200}}}
OPENAI_AUDIO = {"format": "openai.chat", "usage": {
    "prompt_tokens": 900, "completion_tokens": 700, "total_tokens": 1600,
    "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 500},
    "completion_tokens_details": {"reasoning_tokens": 250, "audio_tokens": 400}}}


def sums(model, **filters) -> dict:
    return model.objects.filter(**filters).aggregate(**{name: Sum(name) for name in FIELDS})


def test_every_class_and_provider_objects_reach_the_ledger_and_the_rollups(catalog, topics, producer, drain):
    plain = event(cache_write_tokens=300, cache_write_long_tokens=100, audio_input_tokens=50, audio_output_tokens=12,
                  reasoning_tokens=200)
    anthropic = event(**NO_TOKENS, provider_usage=ANTHROPIC)
    openai = event(**NO_TOKENS, provider_usage=OPENAI_AUDIO, customer_id="globex")
    old = event()  # the shape of every event before these fields existed
    send(producer, topics["usage"], [plain, anthropic, old], key="acme")
    send(producer, topics["usage"], openai, key="globex")
    producer.flush()

    stats = drain()

    assert stats.appended == 4
    stored = {e.event_id: e for e in UsageEvent.objects.all()}
    assert [getattr(stored[anthropic["event_id"]], name) for name in FIELDS] == [3240, 2000, 300, 1000, 200, 0, 0, 0]
    assert [getattr(stored[openai["event_id"]], name) for name in FIELDS] == [900, 100, 700, 0, 0, 500, 400, 250]
    assert [getattr(stored[plain["event_id"]], name) for name in FIELDS] == [1830, 1024, 412, 300, 100, 50, 12, 200]
    assert [getattr(stored[old["event_id"]], name) for name in FIELDS[3:]] == [0, 0, 0, 0, 0]
    assert stored[anthropic["event_id"]].provider_usage == ANTHROPIC
    assert stored[plain["event_id"]].provider_usage is None
    assert sums(HourlyRollup) == sums(UsageEvent)
    assert sums(HourlyRollup, customer_id="acme")["cache_write_tokens"] == 1300
    assert rollup_differences(start=None, end=None) == []
    rollups_rebuild(start=None, end=None)
    assert rollup_differences(start=None, end=None) == [] and sums(HourlyRollup) == sums(UsageEvent)


def test_a_repeat_differing_only_in_a_newer_field_is_a_conflict_with_both_payloads(catalog, topics, producer, drain):
    original = event(reasoning_tokens=100, audio_output_tokens=10)
    exact = dict(original)
    changed = dict(original, reasoning_tokens=101)
    old_style = event()
    old_retry = {**old_style, "reasoning_tokens": 0}  # an explicit 0 is the same event as before
    send(producer, topics["usage"], [original, old_style], key="acme")
    send(producer, topics["usage"], [exact, changed, old_retry], key="acme")
    producer.flush()

    stats = drain()

    assert (stats.appended, stats.duplicates, stats.conflicts) == (2, 2, 1)
    conflict = DeadLetter.objects.get(kind="conflict")
    assert conflict.payload["reasoning_tokens"] == 101
    assert conflict.existing_payload["reasoning_tokens"] == 100 and conflict.existing_payload["audio_output_tokens"] == 10
    assert "cache_write_tokens" not in conflict.existing_payload  # 0: left out, as the validator's payload does


def test_each_token_rule_broken_on_kafka_is_a_dead_letter_with_its_reason(
        catalog, topics, producer, drain, kafka_bootstrap):
    broken = {
        "input_parts_exceed_input": event(cache_write_tokens=900, cache_write_long_tokens=10),
        "reasoning_exceeds_output": event(reasoning_tokens=413),
        "audio_output_exceeds_output": event(audio_output_tokens=500),
        "provider_usage_with_token_fields": event(provider_usage=OPENAI_AUDIO),
        "provider_usage_format_unknown": event(**NO_TOKENS, provider_usage={"format": "cohere", "usage": {}}),
        "service_tier_unknown": event(service_tier="premium"),
    }
    send(producer, topics["usage"], list(broken.values()), key="acme")
    producer.flush()

    drain()

    assert UsageEvent.objects.count() == 0
    assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == sorted(broken)
    dlq = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics["dlq"], expected=len(broken))]
    assert sorted(m["reason"] for m in dlq) == sorted(broken)


def test_a_tier_added_to_the_catalog_is_accepted_from_then_on(catalog, topics, producer, drain):
    early = event(service_tier="scale")
    send(producer, topics["usage"], early, key="acme")
    producer.flush()
    drain()
    assert DeadLetter.objects.get().reason == "service_tier_unknown"

    ServiceTier.objects.create(name="scale", description="Scale tier")
    later = event(service_tier="scale")
    send(producer, topics["usage"], later, key="acme")
    producer.flush()
    drain()

    assert list(UsageEvent.objects.values_list("event_id", "service_tier")) == [(later["event_id"], "scale")]


# --- REST ---------------------------------------------------------------------------


def test_rest_accepts_a_provider_object_and_hands_it_to_kafka_as_sent(catalog, topics, api_client_for, kafka_bootstrap):
    body = event(**NO_TOKENS, provider_usage=ANTHROPIC)

    response = api_client_for("ingest").post("/api/v1/usage-events", body, format="json")

    assert response.status_code == 202 and response.json() == {"accepted": 1, "rejected": []}
    (record,) = read_topic(kafka_bootstrap, topics["usage"], expected=1)
    assert json.loads(record.value)["provider_usage"] == ANTHROPIC


def test_rest_names_the_field_of_each_token_rule(catalog, topics, api_client_for):
    bodies = [event(reasoning_tokens=413), event(cache_write_long_tokens=2000),
              event(**NO_TOKENS, provider_usage={"format": "gemini", "usage": {"promptTokenCount": "9"}})]

    response = api_client_for("ingest").post("/api/v1/usage-events", {"events": bodies}, format="json")

    assert response.status_code == 422
    assert [sorted(r["errors"]) for r in response.json()["rejected"]] == [
        ["reasoning_tokens"], ["input_tokens"], ["provider_usage"]]


def test_service_tiers_are_listed_to_any_key_and_added_by_admins(catalog, api_client_for):
    listed = api_client_for("ingest").get("/api/v1/service-tiers")
    refused = api_client_for("customer", "acme").post("/api/v1/service-tiers", {"name": "scale"}, format="json")
    created = api_client_for("admin").post("/api/v1/service-tiers", {"name": "scale", "description": "Scale"},
                                           format="json")
    again = api_client_for("admin").post("/api/v1/service-tiers", {"name": "scale"}, format="json")

    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()["results"]] == ["standard", "batch", "priority", "flex", "provisioned"]
    assert refused.status_code == 403
    assert created.status_code == 201 and created.json()["name"] == "scale"
    assert again.status_code == 422 and "name" in again.json()["errors"]
    assert ServiceTier.objects.filter(name="scale").count() == 1


def test_a_price_for_an_unknown_service_tier_is_a_field_error(catalog, api_client_for):
    body = {"effective_from": "2026-01-01T00:00:00Z", "prices": [
        {"model_tier": "frontier", "service_tier": "premium", "token_class": "cache_write", "unit_price": "3.125"}]}

    response = api_client_for("admin").post("/api/v1/price-books", body, format="json")

    assert response.status_code == 422
    assert "service_tier" in json.dumps(response.json()["errors"])


# --- admin ---------------------------------------------------------------------------


def test_finance_managers_add_service_tiers_and_viewers_only_read_them(manager, viewer):
    for name in ("standard", "flex"):
        ServiceTier.objects.get_or_create(name=name)
    added = manager.post(reverse("admin:metering_servicetier_add"), {"name": "scale", "description": "Scale"})
    flex = ServiceTier.objects.get(name="flex")
    renamed = manager.post(reverse("admin:metering_servicetier_change", args=[flex.pk]),
                           {"name": "cheap", "description": "Idle capacity"})

    assert added.status_code == 302 and ServiceTier.objects.filter(name="scale").exists()
    flex.refresh_from_db()
    assert (flex.name, flex.description) == ("flex", "Idle capacity")  # the name never changes
    assert manager.post(reverse("admin:metering_servicetier_delete", args=[flex.pk]), {"post": "yes"}).status_code == 403
    assert viewer.get(reverse("admin:metering_servicetier_changelist")).status_code == 200
    assert viewer.post(reverse("admin:metering_servicetier_add"), {"name": "other"}).status_code == 403
    assert renamed.status_code == 302
