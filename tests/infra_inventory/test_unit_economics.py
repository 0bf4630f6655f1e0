"""Unit economics (DESIGN.md §4, API.md GET /unit-economics), margin guardrails and the FOCUS
cost export, on a fleet small enough to work out by hand."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from billing.models import WebhookDelivery, WebhookEndpoint
from billing.services.contracts import contract_put
from billing.services.price_books import price_book_create
from infra_inventory.economics_apis import FOCUS_COLUMNS, FOCUS_TOKEN_COLUMNS
from infra_inventory.margins import margin_alerts_record
from infra_inventory.models import ClusterHourCost, CostAllocation, MarginAlert
from infra_inventory.selectors import unit_economics
from infra_inventory.services import costs_allocate
from metering.services import utc_now
from tests.infra_inventory.test_allocation import (
    cluster_make, datacenter_make, list_prices_publish, reading, rollup, sku_make,
)

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
MILLION = Decimal(1_000_000)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def usd(text: str) -> Decimal:
    return Decimal(text)


@pytest.fixture
def scenario(catalog):
    """iad-1 (PUE 1.25, 0.10 USD/kWh), iad-h100-a: 8 accelerators × 35,040.00 over 48 months,
    1000 W each. Three hours from 2026-03-02 10:00 UTC:
      10:00  acme frontier 1,000,000 input + 250,000 output      (weighted 2,000,000)
             globex nano 4,500,000 input of which 500,000 cached + 487,500 output
                                                                  (weighted 4,000,000 + 50,000 + 1,950,000 = 6,000,000)
      11:00  nothing: idle
      12:00  acme frontier 500,000 input + 125,000 output, measured 6.4 kWh IT energy
    And ams-1 / ams-mi300x-a: in service, never used (idle all along)."""
    list_prices_publish()
    iad = cluster_make("iad-h100-a", datacenter_make("iad-1"), sku_make())
    ams = cluster_make("ams-mi300x-a", datacenter_make("ams-1", region="eu-west", pue="1.00", price="0.20"),
                       sku_make("mi300x", vendor="AMD", unit_cost="17520.00", watts=500), count=2)
    rollup("acme", "gpt-5.4", T0, input_tokens=1_000_000, output=250_000, cluster="iad-h100-a", region="us-east")
    rollup("globex", "gpt-5.4-nano", T0, input_tokens=4_500_000, cached=500_000, output=487_500,
           cluster="iad-h100-a", region="us-east")
    rollup("acme", "gpt-5.4", T0 + 2 * HOUR, input_tokens=500_000, output=125_000, cluster="iad-h100-a",
           region="us-east")
    reading(iad, T0 + 2 * HOUR, "6.4")
    costs_allocate(start=T0, end=T0 + 3 * HOUR, as_of=T0 + 3 * HOUR)
    return iad, ams


@pytest.mark.django_db
class TestHandWorkedScenario:
    """Every figure below is worked out from DESIGN.md §4 and §3, not read back from the code.

    iad-h100-a, an hour: hardware 8 × 35,040.00 / (48 × 730) = 8.00; estimated power
    8 × 1000 W / 1000 = 8 kWh × 1.25 × 0.10 = 1.00 (10 kWh); measured 6.4 × 1.25 × 0.10 = 0.80 (8 kWh).
    ams-mi300x-a, an hour: 2 × 17,520 / 35,040 = 1.00 hardware; 2 × 500 W = 1 kWh × 1.00 × 0.20 = 0.20.
    10:00 (9.00) is shared 1 : 3 by weighted tokens: acme 2.00 + 0.25, globex 6.00 + 0.75.
    11:00 (9.00) is idle. 12:00 (8.80) is acme's alone. ams: 3 × 1.20 = 3.60 idle.
    """

    def test_costs_per_customer_and_per_million_tokens(self, scenario):
        result = unit_economics(start=T0, end=T0 + 3 * HOUR, group_by=["customer"])

        rows = {row.keys["customer"]: row.figures for row in result.rows}
        acme, globex = rows["acme"], rows["globex"]
        assert (acme.hardware_cost, acme.power_cost, acme.energy_kwh) == (usd("10.00"), usd("1.05"), Decimal("10.5"))
        assert (globex.hardware_cost, globex.power_cost, globex.energy_kwh) == (usd("6.00"), usd("0.75"),
                                                                                Decimal("7.5"))
        assert acme.tokens == 1_500_000 + 375_000
        assert globex.tokens == 4_000_000 + 500_000 + 487_500
        assert acme.cost_per_million_tokens == (usd("11.05") * MILLION / 1_875_000).quantize(Decimal("0.000001"))
        assert acme.kwh_per_million_tokens == Decimal("10.5") * MILLION / 1_875_000  # 5.6 exactly
        assert globex.cost_per_million_tokens == (usd("6.75") * MILLION / 4_987_500).quantize(Decimal("0.000001"))

    def test_revenue_is_rated_at_list_prices_and_margin_follows(self, scenario):
        result = unit_economics(start=T0, end=T0 + 3 * HOUR, group_by=["customer", "model_tier"])

        rows = {(row.keys["customer"], row.keys["model_tier"]): row.figures for row in result.rows}
        acme, globex = rows[("acme", "frontier")], rows[("globex", "nano")]
        # acme: 1,500,000 input × 2.50 / 1M = 3.75; 375,000 output × 15.00 / 1M = 5.625 → 5.63
        assert acme.revenue == usd("9.38")
        assert acme.gross_margin_shown == usd("9.38") - usd("10.00") - usd("1.05") == usd("-1.67")
        assert acme.margin_percent_shown == usd("-17.80")  # −1.67 / 9.38 = −17.8038…%
        # globex: 4,000,000 × 0.20 = 0.80; 500,000 cached × 0.02 = 0.01; 487,500 × 1.25 = 0.609375 → 0.61
        assert globex.revenue == usd("1.42")
        assert globex.gross_margin_shown == usd("-5.33")

    def test_idle_cost_and_totals(self, scenario):
        result = unit_economics(start=T0, end=T0 + 3 * HOUR, group_by=["datacenter"])

        totals = result.totals
        assert totals.total_cost_shown == usd("9.00") + usd("9.00") + usd("8.80") + 3 * usd("1.20")  # 30.40
        assert totals.idle_cost == totals.idle_cost_shown == usd("9.00") + usd("3.60")
        assert totals.hardware_cost_shown + totals.power_cost_shown == usd("17.80")
        assert totals.revenue == usd("10.80")
        assert result.unplaced_tokens == 0 and result.hours_not_allocated == 0
        rows = {row.keys["datacenter"]: row.figures for row in result.rows}
        assert (rows["iad-1"].idle_cost_shown, rows["iad-1"].total_cost_shown) == (usd("9.00"), usd("26.80"))
        assert (rows["ams-1"].idle_cost_shown, rows["ams-1"].total_cost_shown, rows["ams-1"].tokens) == \
            (usd("3.60"), usd("3.60"), 0)

    def test_a_contract_override_prices_the_revenue(self, scenario):
        contract_put(customer_id="globex", effective_from=utc(2026, 1, 1), effective_to=None,
                     discount_percent=Decimal("50.00"), monthly_minimum=None, volume_tiers=[], actor="test",
                     unit_price_overrides=[{"model_tier": "nano", "service_tier": "standard", "token_class": "input",
                                            "unit_price": Decimal("0.10")}])

        result = unit_economics(start=T0, end=T0 + 3 * HOUR, group_by=["customer"])

        globex = next(row.figures for row in result.rows if row.keys["customer"] == "globex")
        assert globex.revenue == usd("0.40") + usd("0.01") + usd("0.61")  # override; discount not applied here


@pytest.mark.django_db
class TestUnitEconomicsApi:
    def test_rows_and_totals_as_strings(self, scenario, api_client_for):
        client = api_client_for("admin")

        response = client.get("/api/v1/unit-economics", {"start": "2026-03-02T10:00:00Z",
                                                         "end": "2026-03-02T13:00:00Z", "group_by": "cluster,day"})

        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["next"] is None and body["group_by"] == ["cluster", "day"]
        assert body["idle_cost"] == "12.60" and body["unplaced_tokens"] == 0
        iad = next(row for row in body["results"] if row["cluster"] == "iad-h100-a")
        assert iad == {
            "cluster": "iad-h100-a", "day": "2026-03-02T00:00:00+00:00", "tokens": 6_862_500,
            "input_tokens": 5_500_000, "cached_input_tokens": 500_000, "cache_write_tokens": 0,
            "cache_write_long_tokens": 0, "audio_input_tokens": 0, "output_tokens": 862_500, "audio_output_tokens": 0,
            "reasoning_tokens": 0, "covered_tokens": 0, "revenue": "10.80", "usage_revenue": "10.80",
            "capacity_revenue": "0.00", "hardware_cost": "16.00", "power_cost": "1.80",
            "energy_kwh": "18.000",
            "gross_margin": "-7.00", "margin_percent": "-64.81", "cost_per_million_tokens": "2.593807",
            "kwh_per_million_tokens": "2.622951", "idle_cost": "9.00", "total_cost": "26.80",
            "idle_energy_kwh": "10.000", "reserved_idle_cost": "0.00", "emissions_kg_co2e": "0.000",
            "g_co2e_per_million_tokens": "0.000",
        }
        totals = body["totals"]
        assert (totals["total_cost"], totals["hardware_cost"], totals["power_cost"], totals["idle_cost"]) == \
            ("30.40", "16.00", "1.80", "12.60")
        assert totals["cluster_hours"] == 6 and totals["hours_not_allocated"] == 0
        assert (body["capacity_revenue"], totals["capacity_revenue"], totals["capacity_revenue_outside_rows"]) == \
            ("0.00", "0.00", "0.00")

    def test_customer_rows_carry_no_idle_cost(self, scenario, api_client_for):
        response = api_client_for("admin").get("/api/v1/unit-economics", {
            "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T13:00:00Z", "group_by": "customer,model"})

        rows = response.json()["results"]
        assert [(r["customer"], r["model"]) for r in rows] == [("acme", "gpt-5.4"), ("globex", "gpt-5.4-nano")]
        assert all(r["idle_cost"] is None and r["total_cost"] is None for r in rows)

    def test_zero_revenue_has_no_margin_percent(self, catalog, api_client_for):
        list_prices_publish()
        cluster_make("iad-h100-a", datacenter_make("iad-1"), sku_make())
        costs_allocate(start=T0, end=T0 + HOUR, as_of=T0 + HOUR)

        body = api_client_for("admin").get("/api/v1/unit-economics", {
            "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z", "group_by": "cluster"}).json()

        row = body["results"][0]
        assert (row["revenue"], row["margin_percent"], row["cost_per_million_tokens"], row["idle_cost"]) == \
            ("0.00", None, None, "9.00")

    @pytest.mark.parametrize("params, field", [
        ({"start": "2026-03-02T10:30:00Z", "end": "2026-03-02T13:00:00Z"}, "start"),
        ({"start": "2026-03-02T13:00:00Z", "end": "2026-03-02T10:00:00Z"}, "end"),
        ({"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T13:00:00Z", "group_by": "region"}, "group_by"),
    ])
    def test_bad_query_is_422(self, db, api_client_for, params, field):
        response = api_client_for("admin").get("/api/v1/unit-economics", params)

        assert response.status_code == 422
        assert response["Content-Type"] == "application/problem+json"
        assert field in response.json()["errors"]

    def test_customer_keys_are_refused(self, catalog, api_client_for):
        response = api_client_for("customer", "acme").get(
            "/api/v1/unit-economics", {"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T13:00:00Z"})

        assert response.status_code == 403


# --- every token class ------------------------------------------------------------------

T1 = datetime(2026, 5, 4, 10, tzinfo=UTC)
# A price book of this test's own (USD per 1M, standard tier), pricing every class.
CLASS_PRICES = {
    "frontier": {"input": "2.00", "cached_input": "0.20", "cache_write": "2.50", "cache_write_long": "4.00",
                 "audio_input": "16.00", "output": "10.00", "audio_output": "40.00"},
    "mini": {"input": "0.50", "cached_input": "0.05", "cache_write": "0.625", "cache_write_long": "1.00",
             "audio_input": "4.00", "output": "2.00", "audio_output": "8.00"},
    "nano": {"input": "0.10", "cached_input": "0.01", "cache_write": "0.125", "cache_write_long": "0.20",
             "audio_input": "0.80", "output": "0.40", "audio_output": "1.60"},
}


def class_prices_publish(*, classes=None, effective_from=utc(2026, 5, 1)):
    prices = [{"model_tier": tier, "service_tier": "standard", "token_class": token_class,
               "unit_price": Decimal(price)}
              for tier, by_class in CLASS_PRICES.items() for token_class, price in by_class.items()
              if classes is None or token_class in classes]
    return price_book_create(effective_from=effective_from, currency="USD", prices=prices, actor="test",
                             as_of=effective_from)


@pytest.fixture
def classes_fleet(catalog):
    class_prices_publish()
    return classes_fleet_make()


def classes_fleet_make():
    """iad-h100-a (8.00 hardware + 1.00 power an hour, as in `scenario`) on a SKU weighing every
    class apart (input 1, cached 0.1, write 1.5, long write 2.5, audio in 3, out 4, audio out 10),
    and one hour of usage, 2026-05-04 10:00 UTC:
      acme frontier  400,000 uncached + 200,000 cached + 300,000 written + 100,000 written for
                     an hour; 50,000 output of which 20,000 reasoning       1,320,000 weighted
      globex mini    300,000 uncached + 200,000 audio; 60,000 text + 60,000 audio out
                                                                              1,740,000 weighted
      acme nano      740,000 uncached; 50,000 output                            940,000 weighted
    Shares of 9.00 by 4,000,000 weighted: acme frontier 2.64 + 0.33, globex 3.48 + 0.435, acme
    nano 1.88 + 0.235. Allocated."""
    cluster = cluster_make("iad-h100-a", datacenter_make("iad-1"), sku_make(
        weight_cache_write=Decimal("1.5"), weight_cache_write_long=Decimal("2.5"), weight_audio_input=Decimal(3),
        weight_audio_output=Decimal(10)))
    rollup("acme", "gpt-5.4", T1, input_tokens=1_000_000, cached=200_000, cache_write=300_000,
           cache_write_long=100_000, output=50_000, reasoning=20_000, cluster="iad-h100-a", region="us-east")
    rollup("globex", "gpt-5.4-mini", T1, input_tokens=500_000, audio_input=200_000, output=120_000,
           audio_output=60_000, cluster="iad-h100-a", region="us-east")
    rollup("acme", "gpt-5.4-nano", T1, input_tokens=740_000, output=50_000, cluster="iad-h100-a", region="us-east")
    costs_allocate(start=T1, end=T1 + HOUR, as_of=T1 + HOUR)
    return cluster


@pytest.mark.django_db
class TestEveryTokenClass:
    def test_rows_carry_each_class_and_revenue_prices_each(self, classes_fleet):
        result = unit_economics(start=T1, end=T1 + HOUR, group_by=["customer", "model_tier"])

        rows = {(row.keys["customer"], row.keys["model_tier"]): row.figures for row in result.rows}
        frontier, mini, nano = rows[("acme", "frontier")], rows[("globex", "mini")], rows[("acme", "nano")]
        assert (frontier.input_tokens, frontier.cached_input_tokens, frontier.cache_write_tokens,
                frontier.cache_write_long_tokens, frontier.output_tokens, frontier.reasoning_tokens) == \
            (400_000, 200_000, 300_000, 100_000, 50_000, 20_000)
        assert (mini.input_tokens, mini.audio_input_tokens, mini.output_tokens, mini.audio_output_tokens) == \
            (300_000, 200_000, 60_000, 60_000)
        assert frontier.tokens == 1_050_000  # the classes; reasoning is part of the output, not counted again
        assert mini.tokens == 620_000
        # 400,000 × 2.00 = 0.80; 200,000 × 0.20 = 0.04; 300,000 × 2.50 = 0.75; 100,000 × 4.00 = 0.40;
        # 50,000 × 10.00 = 0.50 (reasoning within it, priced once)
        assert frontier.revenue == usd("2.49")
        # 300,000 × 0.50 = 0.15; 200,000 audio × 4.00 = 0.80; 60,000 × 2.00 = 0.12; 60,000 audio × 8.00 = 0.48
        assert mini.revenue == usd("1.55")
        # 740,000 × 0.10 = 0.074 → 0.07; 50,000 × 0.40 = 0.02
        assert nano.revenue == usd("0.09")
        assert (frontier.hardware_cost, frontier.power_cost) == (usd("2.64"), usd("0.33"))
        assert (mini.hardware_cost, mini.power_cost) == (usd("3.48"), usd("0.435"))
        assert frontier.gross_margin_shown == usd("2.49") - usd("2.97") == usd("-0.48")
        assert mini.gross_margin_shown == usd("1.55") - usd("3.48") - usd("0.44")  # 0.435 shown as 0.44
        assert frontier.cost_per_million_tokens == (usd("2.97") * MILLION / 1_050_000).quantize(Decimal("0.000001"))
        assert result.totals.tokens == 1_050_000 + 620_000 + 790_000
        assert result.totals.reasoning_tokens == 20_000

    def test_a_class_served_without_a_price_leaves_the_revenue_unknown(self, catalog):
        class_prices_publish(classes={"input", "cached_input", "output"})  # a book from before the newer classes
        classes_fleet_make()

        result = unit_economics(start=T1, end=T1 + HOUR, group_by=["customer", "model_tier"])

        revenue = {(row.keys["customer"], row.keys["model_tier"]): row.figures.revenue for row in result.rows}
        assert revenue[("acme", "frontier")] is None  # cache writes served, no price for them: never counted as 0
        assert revenue[("globex", "mini")] is None  # audio
        assert revenue[("acme", "nano")] == usd("0.09")  # plain text usage needs no price of the newer classes

    def test_the_api_shows_each_class(self, classes_fleet, api_client_for):
        body = api_client_for("admin").get("/api/v1/unit-economics", {
            "start": "2026-05-04T10:00:00Z", "end": "2026-05-04T11:00:00Z", "group_by": "customer,model"}).json()

        mini = next(row for row in body["results"] if row["model"] == "gpt-5.4-mini")
        assert {k: mini[k] for k in ("tokens", "input_tokens", "cached_input_tokens", "cache_write_tokens",
                                     "cache_write_long_tokens", "audio_input_tokens", "output_tokens",
                                     "audio_output_tokens", "reasoning_tokens", "revenue", "hardware_cost",
                                     "power_cost", "gross_margin")} == {
            "tokens": 620_000, "input_tokens": 300_000, "cached_input_tokens": 0, "cache_write_tokens": 0,
            "cache_write_long_tokens": 0, "audio_input_tokens": 200_000, "output_tokens": 60_000,
            "audio_output_tokens": 60_000, "reasoning_tokens": 0, "revenue": "1.55", "hardware_cost": "3.48",
            "power_cost": "0.44", "gross_margin": "-2.37"}
        totals = body["totals"]
        assert (totals["cache_write_tokens"], totals["cache_write_long_tokens"], totals["reasoning_tokens"],
                totals["tokens"]) == (300_000, 100_000, 20_000, 2_460_000)

    def test_the_focus_export_carries_each_class(self, classes_fleet, api_client_for):
        response = api_client_for("admin").get("/api/v1/exports/focus", {"start": "2026-05-04T00:00:00Z",
                                                                         "end": "2026-05-05T00:00:00Z"})

        [record] = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert {column: int(record[column]) for column in FOCUS_TOKEN_COLUMNS} == {
            "x_InputTokens": 400_000 + 300_000 + 740_000, "x_CachedInputTokens": 200_000,
            "x_CacheWriteTokens": 300_000, "x_CacheWriteLongTokens": 100_000, "x_AudioInputTokens": 200_000,
            "x_OutputTokens": 50_000 + 60_000 + 50_000, "x_AudioOutputTokens": 60_000, "x_ReasoningTokens": 20_000}
        classes = [c for c in FOCUS_TOKEN_COLUMNS if c != "x_ReasoningTokens"]
        assert int(record["ConsumedQuantity"]) == sum(int(record[c]) for c in classes) == 2_460_000
        assert record["x_Revenue"] == "4.13"  # 2.49 + 1.55 + 0.09
        assert (record["x_AllocatedCost"], record["x_IdleCost"]) == ("9.000000", "0.000000")  # the hour allocated


# --- margin guardrails ------------------------------------------------------------------


@pytest.fixture
def cheap_fleet(catalog):
    """One accelerator at 3,504.00 over 48 months: 0.10 an hour, + 100 W × 1.00 × 0.10 = 0.01.
    On 2026-03-02 10:00, acme and globex each send 1M frontier input + 1M output tokens; globex's
    contract prices frontier standard at 0.000001 per 1M, so it earns 0.00 for a 0.055 cost."""
    list_prices_publish()
    cluster_make("iad-h100-a", datacenter_make("iad-1", pue="1.00"), sku_make(unit_cost="3504.00", watts=100), count=1)
    contract_put(customer_id="globex", effective_from=utc(2026, 1, 1), effective_to=None, discount_percent=Decimal(0),
                 monthly_minimum=None, volume_tiers=[], actor="test", unit_price_overrides=[
                     {"model_tier": "frontier", "service_tier": "standard", "token_class": c,
                      "unit_price": Decimal("0.000001")} for c in ("input", "output")])
    for customer_id in ("acme", "globex"):
        rollup(customer_id, "gpt-5.4", T0, input_tokens=1_000_000, output=1_000_000, cluster="iad-h100-a")
    day = utc(2026, 3, 2)
    costs_allocate(start=day, end=day + DAY, as_of=utc_now())  # after the inventory was written: current
    return day


@pytest.fixture
def endpoints(db):
    return [WebhookEndpoint.objects.create(url="https://finance.example/hooks", secret="s1", events=[]),
            WebhookEndpoint.objects.create(url="https://ops.example/hooks", secret="s2", events=["margin.negative"]),
            WebhookEndpoint.objects.create(url="https://ar.example/hooks", secret="s3", events=["invoice.finalized"])]


@pytest.mark.django_db
class TestMarginAlerts:
    def test_a_customer_priced_below_cost_is_announced_once(self, cheap_fleet, endpoints):
        day = cheap_fleet
        as_of = day + 2 * DAY

        check = margin_alerts_record(start=day, end=day + DAY, as_of=as_of)

        assert [(a.customer_id, a.model_tier) for a in check.alerts] == [("globex", "frontier")]
        alert = MarginAlert.objects.get(customer_id="globex")
        assert (alert.day, alert.revenue, alert.cost, alert.tokens, alert.announced_at) == \
            (day.date(), usd("0.00"), usd("0.055"), 2_000_000, as_of)  # (0.10 + 0.01) / 2
        assert not MarginAlert.objects.filter(customer_id="acme").exists()  # 17.50 earned for 0.055
        deliveries = WebhookDelivery.objects.filter(event="margin.negative")
        assert sorted(d.endpoint.url for d in deliveries) == ["https://finance.example/hooks",
                                                             "https://ops.example/hooks"]
        assert deliveries[0].payload["data"] == {
            "day": "2026-03-02", "customer_id": "globex", "model_tier": "frontier", "tokens": 2_000_000,
            "currency": "USD", "revenue": "0.00", "cost": "0.06", "gross_margin": "-0.06"}

        again = margin_alerts_record(start=day, end=day + DAY, as_of=as_of + HOUR)

        assert again.alerts == [] and again.days_checked == [day]
        assert WebhookDelivery.objects.filter(event="margin.negative").count() == 2

    def test_open_and_unallocated_days_are_not_checked(self, cheap_fleet, endpoints):
        day = cheap_fleet
        rollup("globex", "gpt-5.4", day + DAY + HOUR, input_tokens=10, cluster="iad-h100-a")

        open_day = margin_alerts_record(start=day, end=day + DAY, as_of=day + 12 * HOUR)
        stale = margin_alerts_record(start=day + DAY, end=day + 2 * DAY, as_of=day + 3 * DAY)

        assert open_day.days_checked == [] and open_day.alerts == []
        assert stale.days_skipped == [day + DAY] and stale.alerts == []
        assert not MarginAlert.objects.exists()

    def test_the_api_lists_alerts_by_day(self, cheap_fleet, api_client_for):
        day = cheap_fleet
        margin_alerts_record(start=day, end=day + DAY, as_of=day + 2 * DAY)
        client = api_client_for("admin")

        inside = client.get("/api/v1/margin-alerts", {"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"})
        outside = client.get("/api/v1/margin-alerts", {"start": "2026-03-03T00:00:00Z"})

        assert inside.status_code == 200
        [alert] = inside.json()["results"]
        assert {k: alert[k] for k in ("day", "customer_id", "model_tier", "revenue", "cost", "announced_at")} == {
            "day": "2026-03-02", "customer_id": "globex", "model_tier": "frontier", "revenue": "0.00",
            "cost": "0.06", "announced_at": "2026-03-04T00:00:00Z"}
        assert outside.json() == {"next": None, "results": []}


@pytest.mark.django_db
def test_the_daily_task_is_scheduled_and_safe_on_an_empty_fleet():
    from config.celery import BEAT_DEFAULTS, app
    from infra_inventory.tasks import margin_alerts_record_task

    entry = BEAT_DEFAULTS["margin-guardrails"]

    assert entry["task"] == margin_alerts_record_task.name and entry["task"] in app.tasks
    assert margin_alerts_record_task() == 0


# --- FOCUS export ----------------------------------------------------------------------


@pytest.mark.django_db
class TestFocusExport:
    def test_csv_columns_and_cost_sums_match_unit_economics(self, scenario, api_client_for):
        start, end = utc(2026, 3, 1, 22), utc(2026, 3, 2, 14)
        costs_allocate(start=start, end=end, as_of=end)  # two days of the two clusters
        client = api_client_for("admin")

        response = client.get("/api/v1/exports/focus", {"start": "2026-03-01T22:00:00Z",
                                                        "end": "2026-03-02T14:00:00Z"})

        assert response.status_code == 200 and response.streaming
        assert response["Content-Type"].startswith("text/csv")
        reader = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
        records = list(reader)
        assert tuple(reader.fieldnames) == FOCUS_COLUMNS
        assert sorted((r["ResourceId"], r["ChargePeriodStart"], r["ChargePeriodEnd"]) for r in records) == [
            ("ams-mi300x-a", "2026-03-01T22:00:00Z", "2026-03-02T00:00:00Z"),
            ("ams-mi300x-a", "2026-03-02T00:00:00Z", "2026-03-02T14:00:00Z"),
            ("iad-h100-a", "2026-03-01T22:00:00Z", "2026-03-02T00:00:00Z"),
            ("iad-h100-a", "2026-03-02T00:00:00Z", "2026-03-02T14:00:00Z"),
        ]
        assert {(r["ChargeCategory"], r["ServiceCategory"], r["BillingCurrency"], r["ConsumedUnit"])
                for r in records} == {("Usage", "AI and Machine Learning", "USD", "Tokens")}

        def total(column):
            return sum((Decimal(r[column]) for r in records), Decimal(0))

        economics = unit_economics(start=start, end=end, group_by=["cluster"])
        fleet = economics.totals
        assert total("BilledCost") == total("x_HardwareCost") + total("x_PowerCost") \
            == fleet.fleet_hardware_cost + fleet.fleet_power_cost
        assert total("x_IdleCost") == fleet.idle_cost
        assert total("x_AllocatedCost") == fleet.cost
        assert total("x_IdleCost").quantize(Decimal("0.01"), ROUND_HALF_UP) == fleet.idle_cost_shown
        # 16 hours: iad 16 × 8.00 + 15 × 1.00 + 0.80 (12:00 measured), ams 16 × 1.20
        assert total("BilledCost").quantize(Decimal("0.01"), ROUND_HALF_UP) == fleet.total_cost_shown == usd("163.00")
        assert total("x_Revenue") == fleet.revenue == usd("10.80")
        assert total("ConsumedQuantity") == fleet.tokens == 6_862_500
        assert total("x_EnergyKwh") == fleet.fleet_energy_kwh
        hours = ClusterHourCost.objects.filter(hour__gte=start, hour__lt=end)
        assert total("BilledCost") == sum((h.hardware_cost + h.power_cost for h in hours), Decimal(0))
        assert sum(a.hardware_cost + a.power_cost for a in CostAllocation.objects.all()) == total("x_AllocatedCost")
        iad_day = next(r for r in records if r["ResourceId"] == "iad-h100-a" and r["ChargePeriodStart"].startswith(
            "2026-03-02"))
        assert (iad_day["PricingQuantity"], iad_day["PricingUnit"], iad_day["RegionId"], iad_day["x_Vendor"]) == \
            ("112", "Accelerator-Hours", "us-east", "NVIDIA")  # 14 hours × 8 accelerators
        assert (iad_day["BillingPeriodStart"], iad_day["BillingPeriodEnd"]) == ("2026-03-01T00:00:00Z",
                                                                               "2026-04-01T00:00:00Z")
