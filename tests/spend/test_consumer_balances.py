"""Balances kept by the real ledger consumer off a real Kafka-protocol broker: fresh within
seconds of the produce, and alerts announced once each (signed webhooks to a real local
receiver through a real Celery worker) even with two consumers writing the same events
at once and a replay of the whole topic."""

import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from threading import Event

import pytest
from django.db import connection

from billing.models import AuditEntry, SpendAlert, WebhookEndpoint
from billing.services.credits import credit_grant
from billing.services.spend import budget_put
from billing.services.webhooks import SIGNATURE_HEADER
from metering.consumer.runner import ConsumerConfig, LedgerConsumer
from metering.services import utc_now
from tests.conftest import TEST_SESSION_TIMEOUT_MS, wait_for
from tests.metering.factories import event
from tests.metering.kafka_helpers import send
from tests.spend.conftest import receiver  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)
# Produce → balance within this long: bench/balance.py's p99 on this machine, with slack for a
# loaded CI (docs/benchmarks.md, "Spend control").
FRESH_WITHIN_S = 5.0


def costly(**overrides) -> dict:
    """4.00 at list prices: 1,000,000 frontier input (2.50) and 100,000 output (15.00)."""
    return event(customer_id="acme", model="gpt-5.4", service_tier="standard", input_tokens=1_000_000,
                 cached_input_tokens=0, output_tokens=100_000, **overrides)


def consumer(kafka_bootstrap, topics, *, group: str, idle_exit_s: float | None) -> LedgerConsumer:
    return LedgerConsumer(ConsumerConfig(
        bootstrap_servers=kafka_bootstrap, topic=topics["usage"], group_id=group, dlq_topic=topics["dlq"],
        session_timeout_ms=TEST_SESSION_TIMEOUT_MS, idle_exit_s=idle_exit_s, stats_interval_s=3600))


def in_thread(run) -> threading.Thread:
    def target():
        try:
            run()
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_a_produced_event_is_in_the_balance_within_seconds(catalog, list_prices, topics, producer, kafka_bootstrap,
                                                           api_client_for):
    gateway = api_client_for("ingest")
    stop = Event()
    worker = in_thread(lambda: consumer(kafka_bootstrap, topics, group=topics["group"], idle_exit_s=None).run(stop))
    try:
        assert wait_for(lambda: gateway.get("/api/v1/customers/acme/balance").json()["lag_ms"] < 2_000)
        sent_at = utc_now()
        send(producer, topics["usage"], costly())
        producer.flush()
        started = time.monotonic()
        seen = wait_for(lambda: (b := gateway.get("/api/v1/customers/acme/balance").json())["spend"] == "4.00" and b,
                        timeout_s=30)
        elapsed_s = time.monotonic() - started
    finally:
        stop.set()
        worker.join(timeout=30)

    assert elapsed_s < FRESH_WITHIN_S
    assert datetime.fromisoformat(seen["as_of"]) >= sent_at - timedelta(seconds=1)  # exact up to after the produce
    assert seen["lag_ms"] < FRESH_WITHIN_S * 1000


def test_alerts_are_sent_once_with_two_consumers_at_once_and_a_replay(catalog, list_prices, topics, producer,
                                                                       kafka_bootstrap, celery_worker, receiver,
                                                                       api_client_for):
    url, received = receiver
    WebhookEndpoint.objects.create(url=url, secret="whsec_test", events=["budget.threshold_crossed",
                                                                          "credit.exhausted"])
    budget_put(customer_id="acme", monthly_limit=Decimal("20.00"), thresholds=[50, 80, 100], hard=True, actor="t",
               as_of=utc_now())
    credit_grant(customer_id="acme", amount=Decimal("6.00"), reason="prepaid", actor="t", as_of=utc_now())
    waves = [[costly() for _ in range(2)] for _ in range(3)]  # 8.00, 16.00, 24.00: 50% at 10, 80% at 16, 100% at 20

    for body in waves[0]:
        send(producer, topics["usage"], body)
    producer.flush()
    first, second = (in_thread(lambda g=g: consumer(kafka_bootstrap, topics, group=g, idle_exit_s=3).run(Event()))
                     for g in ("ledger-one", "ledger-two"))
    for wave in waves[1:]:
        time.sleep(1)
        for body in wave:
            send(producer, topics["usage"], body)
        producer.flush()
    first.join(timeout=120)
    second.join(timeout=120)
    consumer(kafka_bootstrap, topics, group="replay", idle_exit_s=2).run(Event())  # the whole topic again

    balance = api_client_for("ingest").get("/api/v1/customers/acme/balance").json()
    assert (balance["spend"], balance["allowed"], balance["credit_remaining"]) == ("24.00", False, "0.00")
    alerts = sorted(SpendAlert.objects.values_list("kind", "threshold"), key=str)
    assert alerts == [("budget.threshold_crossed", 100), ("budget.threshold_crossed", 50),
                      ("budget.threshold_crossed", 80), ("credit.exhausted", None)]
    wait_for(lambda: len(received) >= 4, timeout_s=60)
    time.sleep(1)  # nothing more arrives
    kinds = sorted((body["type"], body["data"].get("threshold")) for _, body in received)
    assert kinds == [("budget.threshold_crossed", 50), ("budget.threshold_crossed", 80),
                     ("budget.threshold_crossed", 100), ("credit.exhausted", None)]
    assert all(SIGNATURE_HEADER in headers for headers, _ in received)
    assert AuditEntry.objects.filter(action__in=["budget.threshold_crossed", "credit.exhausted"]).count() == 4
