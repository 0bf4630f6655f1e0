"""Spend control at the gateway: BalanceCache against the real tokenledger (the live
server over HTTP, a real database, usage through the real ledger), counted at the
client's reader; tokenledger down is a closed port, its 503 a stub (the real one does
not fail on demand)."""

import logging
import threading
import time
from decimal import Decimal

import pytest

from gateway_client import (
    BalanceCache, BalanceKeyRejected, BalanceUnavailable, SpendRefused, UnknownCustomer, UsageClient,
)
from gateway_client.balance import BalanceReader
from metering.services import api_key_create, utc_now
from scripts import local_kafka
from tests.gateway_client.http_stub import QuietHandler, serve
from tests.gateway_client.spend_fixtures import (  # noqa: F401 (fixtures)
    api, budgeted, counted, ingest, list_prices, served, spend,
)

pytestmark = pytest.mark.django_db(transaction=True)
TTL_S = 0.2


def closed_port_url() -> str:
    return f"http://127.0.0.1:{local_kafka.free_port()}/api/v1"  # nothing listens there


def test_an_allowed_customer_passes_with_money_as_decimal(budgeted, api, ingest):
    cache = BalanceCache(rest_url=api, api_key=ingest, ttl_s=TTL_S)

    balance = cache.check("acme")

    assert balance.allowed and cache.may_spend("acme")
    assert (balance.customer_id, balance.period) == ("acme", f"{utc_now():%Y-%m}")
    assert (balance.spend, balance.budget, balance.budget_remaining) == (Decimal("4.00"), Decimal("10.00"),
                                                                         Decimal("6.00"))
    assert all(isinstance(v, Decimal) for v in (balance.spend, balance.credit_remaining, balance.budget))
    assert balance.as_of.tzinfo is not None and balance.unpriced is False


def test_within_the_ttl_nothing_is_asked_after_it_the_reached_limit_is_refused_locally(budgeted, api, ingest):
    cache = BalanceCache(rest_url=api, api_key=ingest, ttl_s=TTL_S)
    reader = counted(cache)
    assert cache.check("acme").allowed
    spend(served(), served())  # 12.00 of 10.00: the hard budget is reached

    still_cached = cache.check("acme")
    time.sleep(TTL_S + 0.05)
    with pytest.raises(SpendRefused) as refused:
        cache.check("acme")
    asked_then = len(reader.asked)
    again = cache.may_spend("acme")

    assert still_cached.allowed and still_cached.spend == Decimal("4.00")  # the cached one: no request
    assert refused.value.balance.allowed is False
    assert (refused.value.balance.spend, refused.value.balance.budget_remaining) == (Decimal("12.00"), Decimal("0.00"))
    assert "customer acme may not spend" in str(refused.value)
    assert asked_then == 2 and again is False and reader.asked == ["acme", "acme"]  # the refusal is cached too


def test_ttl_zero_asks_every_time(budgeted, api, ingest):
    cache = BalanceCache(rest_url=api, api_key=ingest, ttl_s=0)
    reader = counted(cache)

    for _ in range(3):
        cache.check("acme")

    assert reader.asked == ["acme"] * 3


def test_concurrent_checks_of_a_customer_share_one_request(budgeted, api, ingest):
    cache = BalanceCache(rest_url=api, api_key=ingest, ttl_s=5)
    reader = counted(cache)
    barrier, results = threading.Barrier(8), []

    def check():
        barrier.wait()
        results.append(cache.check("acme"))

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert reader.asked == ["acme"]
    assert len(results) == 8 and len({id(r) for r in results}) == 1


def test_a_customer_key_reads_its_own_and_another_customer_is_unknown(budgeted, api):
    _, globex_key = api_key_create(scope="customer", customer_id="globex", name="globex-gateway")
    cache = BalanceCache(rest_url=api, api_key=globex_key, ttl_s=TTL_S)

    own = cache.check("globex")
    with pytest.raises(UnknownCustomer) as unknown:
        cache.check("acme")

    assert own.customer_id == "globex" and own.allowed and own.spend == Decimal("0.00") and own.budget is None
    assert unknown.value.customer_id == "acme"
    assert "knows no customer 'acme'" in str(unknown.value)


def test_an_unknown_customer_and_a_wrong_key_raise_whatever_the_policy(budgeted, api, ingest):
    cache = BalanceCache(rest_url=api, api_key=ingest, ttl_s=TTL_S, fail_open=True)
    wrong_key = BalanceCache(rest_url=api, api_key="tl_not_a_key", ttl_s=TTL_S, fail_open=True)

    with pytest.raises(UnknownCustomer):
        cache.check("nobody")
    with pytest.raises(BalanceKeyRejected):
        wrong_key.check("acme")


def test_usage_client_checks_spend_with_its_own_key(budgeted, api, ingest):
    client = UsageClient(rest_url=api, api_key=ingest, flush_interval_s=3600)
    spend(served(), served())

    with pytest.raises(SpendRefused):
        client.check_spend("acme")
    client.close()


class TestTokenledgerDown:
    def test_fail_open_serves_unchecked_and_does_not_ask_again_before_the_retry_interval(self, caplog):
        cache = BalanceCache(rest_url=closed_port_url(), api_key="tl_k", ttl_s=TTL_S, retry_interval_s=30)
        reader = counted(cache)

        with caplog.at_level(logging.WARNING, logger="gateway_client"):
            first, second = cache.check("acme"), cache.check("acme")

        assert first is None and second is None and cache.may_spend("acme")
        assert reader.asked == ["acme"]
        assert "no balance of customer acme from tokenledger" in caplog.text
        assert "serving unchecked (fail-open)" in caplog.text

    def test_fail_closed_refuses(self):
        cache = BalanceCache(rest_url=closed_port_url(), api_key="tl_k", ttl_s=TTL_S, fail_open=False)

        with pytest.raises(BalanceUnavailable, match="no balance of customer acme"):
            cache.check("acme")
        assert cache.may_spend("acme") is False

    @pytest.mark.parametrize("fail_open", [True, False])
    def test_the_last_known_refusal_holds_within_stale_max_then_the_policy_decides(self, budgeted, api, ingest,
                                                                                  fail_open):
        spend(served(), served())  # not allowed
        cache = BalanceCache(rest_url=api, api_key=ingest, ttl_s=TTL_S, stale_max_s=0.5, retry_interval_s=0,
                             fail_open=fail_open)
        with pytest.raises(SpendRefused):
            cache.check("acme")
        cache.reader = BalanceReader(rest_url=closed_port_url(), api_key=ingest, timeout_s=1, user_agent="t")
        reader = counted(cache)  # tokenledger is gone

        time.sleep(TTL_S + 0.05)
        with pytest.raises(SpendRefused) as stale:
            cache.check("acme")  # asks, gets no answer: the last known (0.25 s old) still refuses
        time.sleep(0.5)
        if fail_open:
            after = cache.check("acme")
        else:
            with pytest.raises(BalanceUnavailable):
                cache.check("acme")

        assert stale.value.balance.spend == Decimal("12.00")
        assert reader.asked == ["acme", "acme"]
        if fail_open:
            assert after is None

    def test_a_503_is_no_answer_and_its_retry_after_is_honoured(self):
        requests = []

        class Unavailable(QuietHandler):
            def do_GET(self):
                requests.append(self.path)
                self.reply(503, b'{"title": "Service Unavailable"}',
                           {"Content-Type": "application/json", "Retry-After": "30"})

        server, base = serve(Unavailable)
        cache = BalanceCache(rest_url=f"{base}/api/v1", api_key="tl_k", ttl_s=0, retry_interval_s=0)

        try:
            results = [cache.check("acme"), cache.check("acme")]
        finally:
            server.shutdown()
            server.server_close()

        assert results == [None, None]  # fail-open
        assert requests == ["/api/v1/customers/acme/balance"]  # the second waited for Retry-After
