"""/metrics after real work in this process: events drained by the real consumer, billing
runs, webhook attempts, an allocated hour; and who may read it."""

from datetime import UTC, datetime

import pytest
from django.test import Client

from metering.services import api_key_create, api_key_revoke
from tests.operations.conftest import bill_deliver_allocate, drain_mixed_traffic, samples, scrape, value

pytestmark = pytest.mark.django_db(transaction=True)


def test_ingestion_outcomes_dead_letter_reasons_batches_and_lag(catalog, topics, producer, drain):
    before = scrape()

    drain_mixed_traffic(producer, topics, drain)

    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    events = "tokenledger_ingest_events_total"
    assert [delta(events, outcome=o) for o in ("accepted", "duplicate", "conflict", "dead_letter")] == [3, 1, 1, 2]
    dead = "tokenledger_ingest_dead_letters_total"
    assert delta(dead, kind="conflict", reason="conflicting_duplicate") == 1
    assert delta(dead, kind="invalid", reason="model_unknown") == 1
    assert delta(dead, kind="undecodable", reason="undecodable_json") == 1
    assert delta(events, outcome="replayed") == 0
    assert delta("tokenledger_consumer_batch_duration_seconds_count") >= 1
    lags = {s.labels["partition"]: s.value for s in samples(after)
            if s.name == "tokenledger_consumer_lag_messages" and s.labels["topic"] == topics["usage"]}
    assert lags == {"0": 0, "1": 0, "2": 0}
    last_poll = value(after, "tokenledger_consumer_last_poll_timestamp_seconds", group=topics["group"])
    assert last_poll > datetime.now(UTC).timestamp() - 60


def test_a_replay_counts_as_replayed_and_changes_nothing_else(catalog, topics, producer, drain):
    drain_mixed_traffic(producer, topics, drain)
    before = scrape()

    drain(group=f"{topics['group']}-replay")  # a group with no offsets reads the topic again from the start

    after = scrape()
    events = "tokenledger_ingest_events_total"
    deltas = {o: value(after, events, outcome=o) - value(before, events, outcome=o)
              for o in ("accepted", "duplicate", "conflict", "dead_letter", "replayed")}
    assert deltas == {"accepted": 0, "duplicate": 0, "conflict": 0, "dead_letter": 2, "replayed": 5}


def test_billing_runs_webhooks_and_allocation_freshness(receiver_url, settings):
    before = scrape()

    hour = bill_deliver_allocate(receiver_url, settings)
    Client().get("/healthz")

    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tokenledger_billing_runs_total", outcome="done") == 1
    assert delta("tokenledger_billing_runs_total", outcome="failed") == 1
    assert delta("tokenledger_billing_runs_in_progress", status="pending") == 1
    assert delta("tokenledger_billing_run_duration_seconds_count") == 1
    assert delta("tokenledger_billing_run_duration_seconds_bucket", le="1.0") == 1
    assert value(after, "tokenledger_billing_latest_run_failed", period="2026-09") == 1
    assert value(after, "tokenledger_billing_latest_run_failed", period="2026-10") == 0
    assert value(after, "tokenledger_billing_run_oldest_unfinished_created_timestamp_seconds") > 0
    attempts = "tokenledger_webhook_attempts_total"
    assert delta(attempts, event="invoice.finalized", outcome="delivered") == 1
    assert delta(attempts, event="invoice.finalized", outcome="failed") == 1
    assert delta("tokenledger_webhook_deliveries_given_up_total") == 1
    assert value(after, "tokenledger_allocation_latest_hour_timestamp_seconds") == hour.timestamp()
    assert value(after, "tokenledger_facts_up") == 1
    assert delta("tokenledger_http_requests_total", route="healthz", method="GET", status="200") == 1


class TestAccess:
    def test_loopback_needs_no_key(self):
        assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
        assert Client(REMOTE_ADDR="127.0.0.1").get("/api/v1/metrics").status_code == 200

    def test_elsewhere_without_a_key_is_401(self):
        response = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")

        assert (response.status_code, response["Content-Type"]) == (401, "application/problem+json")
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'

    def test_elsewhere_a_key_of_another_scope_is_403(self, db):
        _, raw_key = api_key_create(scope="ingest")

        response = Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw_key}")

        assert response.status_code == 403

    def test_elsewhere_an_admin_key_reads_it_until_revoked(self, db):
        _, raw_key = api_key_create(scope="admin")
        remote = Client(REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION=f"Bearer {raw_key}")

        read = remote.get("/metrics")
        api_key_revoke(key=raw_key, as_of=datetime.now(UTC))
        refused = remote.get("/metrics")

        assert "tokenledger_facts_up 1.0" in read.content.decode()
        assert (read.status_code, refused.status_code) == (200, 401)

    def test_allowed_networks_replace_loopback(self, settings):
        settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]

        inside, loopback = Client(REMOTE_ADDR="10.1.2.3").get("/metrics"), Client().get("/metrics")

        assert (inside.status_code, loopback.status_code) == (200, 401)
