"""POST /usage-events and the reads, over HTTP with real keys, Kafka and Postgres."""

import json

import pytest

from metering.models import ApiKey, UsageEvent
from tests.metering.factories import event, nested, token_sums
from tests.metering.kafka_helpers import read_topic

pytestmark = pytest.mark.django_db(transaction=True)

PROBLEM = "application/problem+json"


def post_events(client, body):
    return client.post("/api/v1/usage-events", data=json.dumps(body), content_type="application/json")


def test_rest_to_kafka_to_ledger_to_usage_end_to_end(catalog, topics, api_client_for, drain):
    ingest, admin = api_client_for("ingest"), api_client_for("admin")
    sent = [event(), event(model="gpt-5.4-mini"), event(customer_id="globex")]

    single = post_events(ingest, sent[0])
    batch = post_events(ingest, {"events": sent[1:]})
    drain()
    usage = admin.get("/api/v1/usage", {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z",
                                         "group_by": "model_tier"})

    assert (single.status_code, single.json()) == (202, {"accepted": 1, "rejected": []})
    assert (batch.status_code, batch.json()["accepted"]) == (202, 2)
    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {e["event_id"] for e in sent}
    rows = {(r["customer_id"], r["model_tier"]): r for r in usage.json()["results"]}
    assert set(rows) == {("acme", "frontier"), ("acme", "mini"), ("globex", "frontier")}
    assert {k: rows[("acme", "mini")][k] for k in token_sums([])} == token_sums([sent[1]])


def test_accepted_events_are_on_kafka_keyed_by_customer_before_the_202(catalog, topics, api_client_for,
                                                                         kafka_bootstrap):
    sent = [event(), event(), event(customer_id="globex")]

    response = post_events(api_client_for("ingest"), {"events": sent})

    assert response.status_code == 202
    records = read_topic(kafka_bootstrap, topics["usage"], expected=2, timeout_s=5)
    by_key = {r.key.decode(): json.loads(r.value) for r in records}
    assert [e["event_id"] for e in by_key["acme"]] == [sent[0]["event_id"], sent[1]["event_id"]]
    assert by_key["globex"]["event_id"] == sent[2]["event_id"]


@pytest.mark.parametrize(("overrides", "field"), [
    ({"event_id": ""}, "event_id"),
    ({"customer_id": "initech"}, "customer_id"),
    ({"model": "gpt-9"}, "model"),
    ({"timestamp": "2026-11-03T14:07:31"}, "timestamp"),
    ({"timestamp": "2099-01-01T00:00:00Z"}, "timestamp"),
    ({"timestamp": "2020-01-01T00:00:00Z"}, "timestamp"),
    ({"input_tokens": -1}, "input_tokens"),
    ({"cached_input_tokens": 5000, "input_tokens": 10}, "cached_input_tokens"),
    ({"output_tokens": "many"}, "output_tokens"),
    ({"service_tier": "premium"}, "service_tier"),
    ({"cache_write_tokens": 2000}, "input_tokens"),
    ({"reasoning_tokens": 10_000}, "reasoning_tokens"),
    ({"audio_output_tokens": -1}, "audio_output_tokens"),
    ({"input_tokens": ..., "cached_input_tokens": ..., "output_tokens": ...,
      "provider_usage": {"format": "gemini", "usage": {"promptTokenCount": -3}}}, "provider_usage"),
    ({"metadata": {"x": "y" * 5000}}, "metadata"),
    ({"event_id": "evt-\u0000"}, "event_id"),
    ({"event_id": "evt-\ud800"}, "event_id"),
    ({"region": "us\u0000east"}, "region"),
    ({"metadata": {"request\u0000id": "gw"}}, "metadata"),
    ({"metadata": {"a": [{"b": "gw-\u0000"}]}}, "metadata"),
    ({"metadata": {"a": "\udbff"}}, "metadata"),
    ({"metadata": {"ratio": float("nan")}}, "metadata"),
    ({"metadata": nested(40)}, "metadata"),
])
def test_each_rule_is_refused_with_a_field_error(catalog, topics, api_client_for, kafka_bootstrap, overrides, field):
    response = post_events(api_client_for("ingest"), event(**overrides))

    assert response.status_code == 422
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert field in body["errors"] and body["rejected"][0]["index"] == 0
    assert read_topic(kafka_bootstrap, topics["usage"], expected=1, timeout_s=1) == []


def test_a_mixed_batch_accepts_the_valid_and_lists_the_rejected(catalog, topics, api_client_for):
    good, bad = event(), event(model="gpt-9")

    response = post_events(api_client_for("ingest"), {"events": [good, bad]})

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "rejected": [
        {"index": 1, "event_id": bad["event_id"], "errors": {"model": ["Model 'gpt-9' is not in the catalog."]}}]}


def test_metadata_nested_past_what_json_decodes_is_a_422_naming_metadata(catalog, topics, api_client_for,
                                                                        kafka_bootstrap):
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    single = json.dumps(event())[:-1] + ', "metadata": ' + deep + "}"
    good, bad = event(), event(event_id="evt-\ud800")
    batch = '{"events": [' + json.dumps(good) + ", " + single + ", " + json.dumps(bad) + "]}"
    ingest = api_client_for("ingest")

    alone = ingest.post("/api/v1/usage-events", data=single, content_type="application/json")
    mixed = ingest.post("/api/v1/usage-events", data=batch, content_type="application/json")

    assert (alone.status_code, alone["Content-Type"]) == (422, PROBLEM)
    assert list(alone.json()["errors"]) == ["metadata"]
    assert mixed.status_code == 202 and mixed.json()["accepted"] == 1
    rejected = mixed.json()["rejected"]
    assert [(r["index"], list(r["errors"])) for r in rejected] == [(1, ["metadata"]), (2, ["event_id"])]
    assert rejected[1]["event_id"] == "evt-\\ud800"  # echoed escaped: a lone surrogate cannot be rendered
    assert [json.loads(r.value)["event_id"] for r in read_topic(kafka_bootstrap, topics["usage"], expected=1)] \
        == [good["event_id"]]


def test_malformed_oversized_and_unauthenticated_requests(catalog, topics, api_client_for):
    ingest = api_client_for("ingest")
    from rest_framework.test import APIClient

    malformed = ingest.post("/api/v1/usage-events", data="{nope", content_type="application/json")
    too_many = post_events(ingest, {"events": [event() for _ in range(1001)]})
    too_big = post_events(ingest, {"events": [event(metadata={"pad": "x" * 3000}) for _ in range(1000)]
                                   + [{"pad": "y" * (2 * 1024 * 1024)}]})
    anonymous = APIClient().post("/api/v1/usage-events", data=json.dumps(event()), content_type="application/json")
    wrong_key = APIClient(HTTP_AUTHORIZATION="Bearer tl_not-a-key").get("/api/v1/usage")

    assert (malformed.status_code, malformed["Content-Type"]) == (400, PROBLEM)
    assert too_many.status_code == 413 and "1000" in too_many.json()["detail"]
    assert too_big.status_code == 413
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert wrong_key.status_code == 401 and wrong_key.json()["status"] == 401


def test_throttled_keys_get_429_with_retry_after(catalog, topics, api_client_for, settings):
    settings.USAGE_INGEST_RATE = "2/min"
    ingest = api_client_for("ingest")

    codes = [post_events(ingest, event()).status_code for _ in range(3)]
    throttled = post_events(ingest, event())

    assert codes == [202, 202, 429]
    assert throttled["Content-Type"] == PROBLEM and int(throttled["Retry-After"]) > 0


def test_scopes_and_tenant_isolation_on_usage(catalog, topics, api_client_for, drain):
    post_events(api_client_for("ingest"), {"events": [event(), event(customer_id="globex")]})
    drain()
    window = {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
    acme = api_client_for("customer", "acme")

    own = acme.get("/api/v1/usage", window)
    other = acme.get("/api/v1/usage", {**window, "customer_id": "globex"})
    ingest_read = api_client_for("ingest").get("/api/v1/usage", window)
    other_customer = acme.get("/api/v1/customers/globex")
    dead_letters = acme.get("/api/v1/dead-letters")

    assert [r["customer_id"] for r in own.json()["results"]] == ["acme"]
    assert other.status_code == 404
    assert ingest_read.status_code == 403
    assert other_customer.status_code == 404
    assert dead_letters.status_code == 403


def test_usage_query_errors_are_field_errors(catalog, api_client_for):
    admin = api_client_for("admin")

    response = admin.get("/api/v1/usage", {"start": "2026-11-01T00:30:00Z", "end": "2026-10-01T00:00:00Z",
                                           "group_by": "model,planet"})

    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"group_by", "start"}


def test_usage_groups_by_day_and_paginates(catalog, topics, api_client_for, drain):
    sent = [event(timestamp=f"2026-11-{day:02d}T10:00:00Z") for day in (20, 20, 21)]
    post_events(api_client_for("ingest"), {"events": sent})
    drain()

    first = api_client_for("admin").get("/api/v1/usage", {
        "customer_id": "acme", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z",
        "group_by": "day", "limit": 1})
    second = api_client_for("admin").get(first.json()["next"])

    rows = first.json()["results"] + second.json()["results"]
    assert [(r["day"][:10], r["events"]) for r in rows] == [("2026-11-20", 2), ("2026-11-21", 1)]
    assert second.json()["next"] is None


def test_catalog_and_customers_over_rest(db, api_client_for):
    admin = api_client_for("admin")

    created = admin.post("/api/v1/customers", {"customer_id": "initech", "name": "Initech"}, format="json")
    duplicate = admin.post("/api/v1/customers", {"customer_id": "initech", "name": "Again"}, format="json")
    model = admin.post("/api/v1/models", {"name": "gpt-5.4", "tier": "frontier"}, format="json")
    patched = admin.patch("/api/v1/customers/initech", {"email": "ap@initech.example"}, format="json")

    assert created.status_code == 201 and created.json()["currency"] == "USD"
    assert duplicate.status_code == 422 and "customer_id" in duplicate.json()["errors"]
    assert model.status_code == 201
    assert patched.json()["email"] == "ap@initech.example"
    assert admin.get("/api/v1/models").json()["results"][0]["tier"] == "frontier"


def test_keys_are_stored_hashed_and_the_schema_is_served(db, api_client_for, client):
    from django.core.management import call_command
    from io import StringIO

    out = StringIO()
    call_command("create_api_key", "--scope", "admin", "--name", "ops", stdout=out)
    raw_key = out.getvalue().strip()

    stored = ApiKey.objects.get(name="ops")
    assert raw_key not in (stored.key_hash, stored.prefix) and raw_key.startswith(stored.prefix)
    assert client.get("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code == 200
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
