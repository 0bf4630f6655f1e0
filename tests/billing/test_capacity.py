"""Reservations and rentals on invoices (DESIGN.md §2, §3), with the real database: capacity
lines prorated to the hour, provisioned usage covered and spillover billed, the usage a
rental covers never priced (not on the invoice, not recorded as billed, never late usage,
never re-rated), and the rules of the services."""

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from billing.documents import invoice_csv, invoice_pdf
from billing.models import BilledUsage, Invoice, Reservation
from billing.selectors import upcoming_invoice, usage_report
from billing.services.billing_runs import billing_run_customers
from billing.services.capacity import (
    CapacityPeriodInvoiced, CapacityTermInvalid, CapacityTooLarge, ClusterOutOfService, RentalOverlap,
    CapacityTermNotEndable, ReservationOverlap, rental_create, rental_end, reservation_end, reservation_put,
)
from billing.services.contracts import contract_put
from billing.services.credits import credit_grant
from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
from billing.services.rerating import invoice_rerate_preview
from infra_inventory.models import Cluster
from metering.adjustment_rules import UsageAdjustmentIn
from metering.adjustments import adjustment_apply, rest_source
from metering.consumer.steps import Accepted, Coordinates
from metering.models import HourlyRollup
from metering.schemas import Catalog, Rules, event_validate
from metering.services import ledger_append
from tests.metering.factories import event

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
OCT_START, NOV_START = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
MID_OCT = datetime(2026, 10, 17, 13, tzinfo=UTC)
FINALIZED_AT = datetime(2026, 11, 2, tzinfo=UTC)
CATALOG = Catalog(customers=frozenset({"acme", "globex"}), models=frozenset({"gpt-5.4", "gpt-5.4-mini"}))


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def rollup(customer_id: str, hour: datetime, input_tokens: int, *, cluster: str = "", service_tier="standard"):
    HourlyRollup.objects.create(customer_id=customer_id, model="gpt-5.4", service_tier=service_tier, region="",
                                cluster=cluster, hour=hour, events=1, input_tokens=input_tokens,
                                cached_input_tokens=0, output_tokens=0)


def put(customer_id="acme", *, starts_at=MID_OCT, ends_at=None, units=10, price="12.50", cluster=None, tier="frontier"):
    return reservation_put(customer_id=customer_id, model_tier=tier, units=units, unit_hour_price=Decimal(price),
                           starts_at=starts_at, ends_at=ends_at, cluster=cluster, actor="test", as_of=FINALIZED_AT)


def rent(customer_id="globex", *, cluster="iad-h100-a", starts_at=OCT_START, ends_at=datetime(2026, 10, 11, tzinfo=UTC),
         price="4.00"):
    return rental_create(customer_id=customer_id, cluster=cluster, accelerator_hour_price=Decimal(price),
                         starts_at=starts_at, ends_at=ends_at, actor="test", as_of=FINALIZED_AT)


def draft(customer_id: str, period: date = OCT) -> Invoice:
    invoice_drafts_refresh(customer_ids=[customer_id], period=period, as_of=FINALIZED_AT)
    return Invoice.objects.get(customer__customer_id=customer_id, period=period, status="draft")


def finalized(customer_id: str, period: date = OCT) -> Invoice:
    return invoice_finalize(invoice_id=draft(customer_id, period).pk, actor="test", as_of=FINALIZED_AT)


def lines(invoice: Invoice) -> list[tuple]:
    return [(line.kind, line.service_tier, line.tokens, line.amount) for line in invoice.lines.order_by("position")]


@pytest.mark.django_db
class TestReservationOnTheInvoice:
    def test_a_reservation_from_mid_month_is_prorated_to_the_cent_with_spillover_billed(self, list_prices, fleet):
        put(units=7, price="1.234567")
        rollup("acme", datetime(2026, 10, 20, tzinfo=UTC), 50_000_000, service_tier="provisioned")
        rollup("acme", datetime(2026, 10, 20, tzinfo=UTC), 2_000_000)  # spilled over: standard, per token

        invoice = draft("acme")

        hours = int((NOV_START - MID_OCT).total_seconds()) // 3600
        assert hours == 347
        capacity = cents(7 * hours * Decimal("1.234567"))
        assert lines(invoice) == [("usage", "provisioned", 50_000_000, Decimal("0.00")),
                                  ("usage", "standard", 2_000_000, Decimal("5.00")),
                                  ("capacity", "", 0, capacity)]
        assert capacity == Decimal("2998.76")
        line = invoice.lines.get(kind="capacity")
        assert (line.usage_start, line.usage_end, line.unit_price) == (MID_OCT, NOV_START, Decimal("1.234567"))
        assert invoice.total == Decimal("5.00") + capacity

    def test_the_discount_skips_capacity_and_the_minimum_and_credits_count_it(self, list_prices, fleet):
        contract_put(customer_id="acme", effective_from=OCT_START, effective_to=None, discount_percent=Decimal(10),
                     monthly_minimum=Decimal("5000.00"), unit_price_overrides=[], volume_tiers=[], actor="test")
        credit_grant(customer_id="acme", amount=Decimal("100.00"), reason="promo", actor="test", as_of=OCT_START)
        put(units=10, price="1.00")  # 10 × 347 h × 1.00 = 3470.00
        rollup("acme", datetime(2026, 10, 20, tzinfo=UTC), 2_000_000)

        invoice = draft("acme")

        assert [(kind, amount) for kind, _, _, amount in lines(invoice)] == [
            ("usage", Decimal("5.00")), ("capacity", Decimal("3470.00")), ("discount", Decimal("-0.50")),
            ("minimum", Decimal("5000.00") - Decimal("3474.50")), ("credits", Decimal("-100.00"))]
        assert invoice.subtotal == Decimal("5000.00") and invoice.total == Decimal("4900.00")

    def test_a_customer_with_only_a_reservation_gets_an_invoice_and_an_upcoming_one(self, list_prices, fleet):
        put("globex", starts_at=OCT_START, units=2, price="0.50")

        invoice = draft("globex")
        _, _, upcoming = upcoming_invoice(customer_id="globex", as_of=datetime(2026, 10, 5, tzinfo=UTC))

        assert lines(invoice) == [("capacity", "", 0, Decimal("744.00"))]
        assert [(line.kind, line.amount) for line in upcoming.lines] == [("capacity", Decimal("744.00"))]

    def test_a_billing_run_bills_customers_with_only_capacity(self, fleet):
        put("acme", starts_at=OCT_START, ends_at=datetime(2026, 10, 2, tzinfo=UTC))
        rent("globex", starts_at=datetime(2026, 9, 1, tzinfo=UTC), ends_at=None)
        put("globex", starts_at=datetime(2026, 9, 1, tzinfo=UTC), ends_at=OCT_START, tier="mini")

        assert billing_run_customers(period=OCT) == ["acme", "globex"]
        assert billing_run_customers(period=date(2026, 8, 1)) == []

    def test_the_pdf_and_csv_show_the_capacity_line(self, list_prices, fleet):
        put(units=10, price="1.00")
        invoice = finalized("acme")

        csv_text = invoice_csv(invoice)

        [row] = [r for r in csv_text.splitlines() if ",capacity," in r]
        assert "3470.00" in row and "Provisioned throughput frontier" in row
        assert invoice_pdf(invoice).startswith(b"%PDF")


@pytest.mark.django_db
class TestRentalCoversItsUsage:
    def test_the_rental_is_billed_and_the_renters_usage_on_it_is_not(self, list_prices, fleet):
        rent()  # globex rents iad-h100-a (8 accelerators) for 10 days of October at 4.00
        rollup("globex", datetime(2026, 10, 5, tzinfo=UTC), 1_000_000, cluster="iad-h100-a")  # covered
        rollup("globex", datetime(2026, 10, 15, tzinfo=UTC), 1_000_000, cluster="iad-h100-a")  # after the rental
        rollup("globex", datetime(2026, 10, 5, tzinfo=UTC), 1_000_000, cluster="iad-h100-b")  # another cluster
        rollup("acme", datetime(2026, 10, 5, tzinfo=UTC), 1_000_000, cluster="iad-h100-a")  # not the renter

        globex, acme = finalized("globex"), finalized("acme")

        assert lines(globex) == [("usage", "standard", 2_000_000, Decimal("5.00")),
                                 ("capacity", "", 0, Decimal(8 * 240 * 4))]
        assert "covers 1,000,000 tokens" in globex.lines.get(kind="capacity").description
        assert lines(acme) == [("usage", "standard", 1_000_000, Decimal("2.50"))]
        billed = BilledUsage.objects.filter(invoice=globex)
        assert sum(b.input_tokens for b in billed) == 2_000_000

    def test_covered_usage_arriving_late_is_never_late_usage(self, list_prices, fleet):
        rent()
        rollup("globex", datetime(2026, 10, 5, tzinfo=UTC), 1_000_000, cluster="iad-h100-a")
        finalized("globex")
        rollup("globex", datetime(2026, 10, 6, tzinfo=UTC), 3_000_000, cluster="iad-h100-a")  # late, covered
        rollup("globex", datetime(2026, 10, 20, tzinfo=UTC), 400_000, cluster="iad-h100-a")  # late, after it

        november = draft("globex", NOV)

        assert lines(november) == [("late_usage", "standard", 400_000, Decimal("1.00"))]

    def test_the_usage_report_counts_covered_tokens_without_pricing_them(self, list_prices, fleet):
        rent()
        rollup("globex", datetime(2026, 10, 5, tzinfo=UTC), 1_000_000, cluster="iad-h100-a")
        rollup("globex", datetime(2026, 10, 15, tzinfo=UTC), 1_000_000, cluster="iad-h100-a")

        [row] = usage_report(customer_id="globex", start=OCT_START, end=NOV_START, group_by=[])

        assert row["input_tokens"] == 2_000_000 and row["amount"] == Decimal("2.50")


def served(*bodies, at: datetime) -> None:
    rules = Rules(arrived_at=at + timedelta(minutes=1), lateness=timedelta(days=35))
    ledger_append(accepted=[
        Accepted(event_validate({**b, "timestamp": at.isoformat()}, catalog=CATALOG, rules=rules),
                 Coordinates("t", 0, i, -1), at + timedelta(minutes=1))
        for i, b in enumerate(bodies)])


@pytest.mark.django_db
class TestReratingSeesCapacity:
    def test_a_finalized_invoice_with_capacity_rerates_to_no_difference(self, list_prices, fleet):
        put("globex", starts_at=OCT_START, units=3, price="2.00")
        rent()
        rollup("globex", datetime(2026, 10, 20, tzinfo=UTC), 1_000_000)
        invoice = finalized("globex")

        preview = invoice_rerate_preview(invoice)

        assert preview.difference == 0 and preview.differences == ()
        assert sum(t.amount for t in preview.now if t.kind == "capacity") == Decimal(3 * 744 * 2 + 8 * 240 * 4)

    def test_voiding_covered_usage_after_finalization_credits_nothing(self, list_prices, fleet):
        rent()
        covered = event(customer_id="globex", cluster="iad-h100-a", input_tokens=1_000_000, cached_input_tokens=0,
                        output_tokens=0)
        billed = event(customer_id="globex", cluster="iad-h100-b", input_tokens=1_000_000, cached_input_tokens=0,
                       output_tokens=0)
        served(covered, billed, at=datetime(2026, 10, 5, 12, tzinfo=UTC))
        invoice = finalized("globex")

        outcome = adjustment_apply(adjustment=UsageAdjustmentIn("adj-1", "globex", covered["event_id"], "void", None,
                                                                "test traffic"),
                                   source=rest_source(), actor="test", as_of=FINALIZED_AT + timedelta(days=1))
        preview = invoice_rerate_preview(invoice)

        assert outcome.status == "applied"
        assert [line[:3] for line in lines(invoice)][0] == ("usage", "standard", 1_000_000)
        assert preview.difference == 0


@pytest.mark.django_db
class TestReservationPut:
    def test_a_new_version_closes_the_open_one_there(self, fleet):
        first = put(starts_at=OCT_START)

        second = put(starts_at=MID_OCT, units=20)

        first.refresh_from_db()
        assert first.ends_at == MID_OCT and second.ends_at is None and second.units == 20

    def test_any_other_overlap_is_refused(self, fleet):
        put(starts_at=MID_OCT, ends_at=datetime(2026, 10, 20, tzinfo=UTC))

        with pytest.raises(ReservationOverlap) as raised:
            put(starts_at=OCT_START, ends_at=datetime(2026, 10, 18, tzinfo=UTC))

        assert raised.value.status == 409
        assert Reservation.objects.filter(customer__customer_id="acme").count() == 1

    def test_no_change_meets_an_invoiced_period(self, list_prices, fleet):
        first = put(starts_at=datetime(2026, 9, 1, tzinfo=UTC))
        finalized("acme")  # October, with the reservation in it

        with pytest.raises(CapacityPeriodInvoiced) as inside:
            put(starts_at=datetime(2026, 10, 20, tzinfo=UTC), units=1)
        with pytest.raises(CapacityPeriodInvoiced):  # another tier, but over October
            put(starts_at=datetime(2026, 9, 1, tzinfo=UTC), ends_at=datetime(2026, 12, 1, tzinfo=UTC), tier="mini")
        september = put(starts_at=datetime(2026, 9, 1, tzinfo=UTC), ends_at=datetime(2026, 9, 2, tzinfo=UTC),
                        tier="mini")  # September has no invoice
        later = put(starts_at=NOV_START, units=1)

        assert inside.value.status == 409
        first.refresh_from_db()
        assert first.ends_at == NOV_START and later.starts_at == NOV_START and september.units == 10
        assert not Reservation.objects.filter(model_tier="mini", ends_at=datetime(2026, 12, 1, tzinfo=UTC)).exists()

    def test_a_reservation_pinned_to_a_cluster_out_of_service_is_refused(self, fleet):
        with pytest.raises(ClusterOutOfService) as raised:
            put(cluster="retired", starts_at=OCT_START)  # retired 2026-10-20, the term is open
        pinned = put(cluster="retired", starts_at=OCT_START, ends_at=datetime(2026, 10, 20, tzinfo=UTC))

        assert raised.value.status == 422
        assert pinned.cluster.name == "retired"

    def test_a_term_too_large_to_invoice_is_refused(self, fleet):
        with pytest.raises(CapacityTooLarge) as raised:
            put(units=2_000_000_000, price="99999999.999999")

        assert raised.value.status == 422 and not Reservation.objects.exists()

    def test_terms_are_on_the_hour(self, fleet):
        with pytest.raises(CapacityTermInvalid) as raised:
            put(starts_at=MID_OCT + timedelta(minutes=30))

        assert raised.value.status == 422


@pytest.mark.django_db
class TestRentalCreate:
    def test_two_rentals_of_a_cluster_never_overlap_whoever_rents_it(self, fleet):
        rent("globex")

        with pytest.raises(RentalOverlap) as raised:
            rent("acme", starts_at=datetime(2026, 10, 10, tzinfo=UTC), ends_at=None)
        after = rent("acme", starts_at=datetime(2026, 10, 11, tzinfo=UTC), ends_at=None)

        assert raised.value.status == 409
        assert after.accelerator_count == 8

    def test_the_rental_keeps_the_accelerators_it_was_rented_with(self, list_prices, fleet):
        rent()
        Cluster.objects.filter(name="iad-h100-a").update(accelerator_count=64)

        invoice = draft("globex")

        assert invoice.lines.get(kind="capacity").amount == Decimal(8 * 240 * 4)

    def test_a_cluster_out_of_service_is_not_rented(self, fleet):
        with pytest.raises(ClusterOutOfService):
            rent(cluster="retired", starts_at=datetime(2026, 10, 19, tzinfo=UTC), ends_at=datetime(2026, 10, 21,
                                                                                                   tzinfo=UTC))


@pytest.mark.django_db
class TestEndingTerms:
    def test_an_open_rental_ended_bills_its_hours_and_no_longer_covers_usage_after(self, list_prices, fleet):
        rental = rent(ends_at=None)
        rollup("globex", datetime(2026, 10, 25, tzinfo=UTC), 1_000_000, cluster="iad-h100-a")

        rental_end(rental_id=rental.pk, ends_at=datetime(2026, 10, 21, tzinfo=UTC), actor="test", as_of=FINALIZED_AT)
        invoice = draft("globex")

        assert lines(invoice) == [("usage", "standard", 1_000_000, Decimal("2.50")),
                                  ("capacity", "", 0, Decimal(8 * 20 * 24 * 4))]

    def test_a_term_only_ends_earlier_and_never_inside_an_invoiced_period(self, list_prices, fleet):
        reservation = put(starts_at=OCT_START, ends_at=None, units=1, price="1.00")
        finalized("acme")

        with pytest.raises(CapacityPeriodInvoiced) as inside:
            reservation_end(reservation_id=reservation.pk, ends_at=datetime(2026, 10, 20, tzinfo=UTC), actor="test",
                            as_of=FINALIZED_AT)
        ended = reservation_end(reservation_id=reservation.pk, ends_at=datetime(2026, 11, 15, tzinfo=UTC),
                                actor="test", as_of=FINALIZED_AT)
        with pytest.raises(CapacityTermNotEndable) as later:
            reservation_end(reservation_id=reservation.pk, ends_at=datetime(2026, 12, 1, tzinfo=UTC), actor="test",
                            as_of=FINALIZED_AT)

        assert inside.value.status == 409 and later.value.status == 422
        assert ended.ends_at == datetime(2026, 11, 15, tzinfo=UTC)
        assert draft("acme", NOV).lines.get(kind="capacity").amount == Decimal(14 * 24)


@pytest.mark.django_db
class TestDemoCapacity:
    def test_the_demo_reserves_mid_month_and_rents_a_cluster_of_the_fleet(self, list_prices, fleet):
        from metering.models import Customer
        from scripts.demo_capacity import RESERVATION, RESERVATION_STARTS_DAYS, capacity_set_up

        Customer.objects.create(customer_id="initech", name="Initech")
        Customer.objects.create(customer_id="hooli", name="Hooli")
        a = fleet["iad-h100-a"]
        Cluster.objects.create(name="iad-h200-a", datacenter=a.datacenter, sku=a.sku, accelerator_count=1,
                               in_service_from=a.in_service_from)
        rollup("hooli", datetime(2026, 10, 30, tzinfo=UTC), 1_000_000, cluster="iad-h200-a")  # covered
        rollup("hooli", datetime(2026, 10, 3, tzinfo=UTC), 1_000_000, cluster="iad-h200-a")  # before: billed

        customers = capacity_set_up(start=OCT_START, end=NOV_START, as_of=OCT_START)
        initech, hooli = draft("initech"), draft("hooli")

        hours = int((NOV_START - OCT_START - RESERVATION_STARTS_DAYS).total_seconds()) // 3600
        assert customers == ["initech", "hooli"]
        assert [(k, t, a) for k, t, _, a in lines(initech)] == [
            ("usage", "provisioned", Decimal("0.00")), ("usage", "provisioned", Decimal("0.00")),
            ("capacity", "", cents(RESERVATION["units"] * hours * RESERVATION["unit_hour_price"]))]
        assert lines(hooli) == [("usage", "standard", 1_000_000, Decimal("2.50")),
                                ("capacity", "", 0, cents(Decimal(48) * Decimal("3.20")))]
        assert "covers 1,000,000 tokens" in hooli.lines.get(kind="capacity").description

    def test_without_the_fleet_the_rental_is_left_out(self, list_prices, catalog):
        from metering.models import Customer
        from scripts.demo_capacity import capacity_set_up

        Customer.objects.create(customer_id="initech", name="Initech")

        assert capacity_set_up(start=OCT_START, end=NOV_START, as_of=OCT_START) == ["initech"]

    def test_the_demo_previews_print_the_capacity_lines(self, catalog, fleet, capsys):
        from metering.models import Customer
        from scripts.demo_pricing import invoices_print

        for customer_id in ("initech", "hooli"):
            Customer.objects.create(customer_id=customer_id, name=customer_id.title())
        a = fleet["iad-h100-a"]
        Cluster.objects.create(name="iad-h200-a", datacenter=a.datacenter, sku=a.sku, accelerator_count=1,
                               in_service_from=a.in_service_from)

        invoices_print(customers=["acme", "globex", "initech", "hooli"], start=OCT_START, end=NOV_START,
                       as_of=OCT_START)

        out = capsys.readouterr().out
        assert "-- invoice preview 2026-10 for initech" in out and "-- invoice preview 2026-10 for hooli" in out
        assert "Provisioned throughput frontier: 2 units × 396 h × 0.40 per unit-hour" in out
        assert "Dedicated cluster iad-h200-a: 1 accelerators × 48 h × 3.20 per accelerator-hour" in out
