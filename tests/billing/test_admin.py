"""Billing admin for finance staff: who may change what, price book versions copied,
edited and published through the services, and the append-only credit ledger."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import Contract, CreditEntry, PriceBook
from billing.services.contracts import contract_put
from billing.services.price_books import price_book_create
from metering.models import Customer, HourlyRollup
from metering.services import catalog_model_create
from tests.conftest import utc

PRICES = [
    {"model_tier": "frontier", "service_tier": "standard", "token_class": "input", "unit_price": Decimal("2.500000")},
    {"model_tier": "frontier", "service_tier": "standard", "token_class": "output", "unit_price": Decimal("10.000000")},
    {"model_tier": "mini", "service_tier": "standard", "token_class": "input", "unit_price": Decimal("0.400000")},
]


def url(name: str, *args) -> str:
    return reverse(f"admin:billing_{name}", args=args)


def offered_actions(response) -> set[str]:
    form = response.context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


@pytest.fixture
def acme(db):
    return Customer.objects.create(customer_id="acme", name="Acme")


@pytest.fixture
def published(db):
    return price_book_create(effective_from=utc(2026, 11, 1), currency="USD", prices=PRICES, note="launch",
                             actor="user:setup", as_of=utc(2026, 10, 20))


@pytest.fixture
def draft(db):
    return price_book_create(effective_from=utc(2026, 12, 1), currency="USD", prices=PRICES[:1], actor="user:setup",
                             as_of=utc(2026, 10, 20), publish=False)


def price_book_form(book: PriceBook, *, effective_from: str, changes: dict | None = None,
                    deleted: tuple = ()) -> dict:
    """The change form of a draft as posted: its prices, with `changes` (key → price) and
    `deleted` keys applied."""
    date, time = effective_from.split(" ")
    data = {"effective_from_0": date, "effective_from_1": time, "currency": book.currency, "note": book.note}
    prices = list(book.prices.order_by("model_tier", "service_tier", "token_class"))
    data |= {"prices-TOTAL_FORMS": len(prices), "prices-INITIAL_FORMS": len(prices), "prices-MIN_NUM_FORMS": 0,
             "prices-MAX_NUM_FORMS": 1000}
    for i, price in enumerate(prices):
        key = "/".join(price.key)
        data |= {f"prices-{i}-id": price.pk, f"prices-{i}-price_book": book.pk,
                 f"prices-{i}-model_tier": price.model_tier, f"prices-{i}-service_tier": price.service_tier,
                 f"prices-{i}-token_class": price.token_class,
                 f"prices-{i}-unit_price": (changes or {}).get(key, price.unit_price)}
        if key in deleted:
            data[f"prices-{i}-DELETE"] = "on"
    return data


def action(client: Client, name: str, *books: PriceBook, follow: bool = True):
    return client.post(url("pricebook_changelist"), {"action": name, "_selected_action": [b.pk for b in books]},
                       follow=follow)


def contract_form(customer: Customer, *, effective_from: str, effective_to: str = "", overrides=(),
                  bands=()) -> dict:
    date, time = effective_from.split(" ")
    end_date, end_time = effective_to.split(" ") if effective_to else ("", "")
    data = {"customer": customer.pk, "effective_from_0": date, "effective_from_1": time,
            "effective_to_0": end_date, "effective_to_1": end_time, "discount_percent": "10.00",
            "monthly_minimum": ""}
    for prefix, rows in (("unit_price_overrides", overrides), ("volume_bands", bands)):
        data |= {f"{prefix}-TOTAL_FORMS": len(rows), f"{prefix}-INITIAL_FORMS": 0, f"{prefix}-MIN_NUM_FORMS": 0,
                 f"{prefix}-MAX_NUM_FORMS": 1000}
        for i, row in enumerate(rows):
            data |= {f"{prefix}-{i}-{field}": value for field, value in row.items()}
    return data


@pytest.mark.django_db
class TestFinanceViewer:
    def test_sees_price_books_and_contracts(self, viewer, published, acme):
        contract = contract_put(customer_id="acme", effective_from=utc(2026, 11, 1), effective_to=None,
                                discount_percent=Decimal(5), monthly_minimum=None, unit_price_overrides=[],
                                volume_tiers=[], actor="user:setup")

        books = viewer.get(url("pricebook_changelist"))
        book_page = viewer.get(url("pricebook_change", published.pk))
        contracts = viewer.get(url("contract_changelist"))
        contract_page = viewer.get(url("contract_change", contract.pk))

        assert books.status_code == 200 and "launch" in books.content.decode()
        assert book_page.status_code == 200 and b'name="_save"' not in book_page.content
        assert contracts.status_code == 200 and "acme" in contracts.content.decode()
        assert contract_page.status_code == 200 and b'name="_save"' not in contract_page.content

    def test_cannot_add_or_change_price_books_or_contracts(self, viewer, draft, acme):
        contract = contract_put(customer_id="acme", effective_from=utc(2026, 11, 1), effective_to=None,
                                discount_percent=Decimal(5), monthly_minimum=None, unit_price_overrides=[],
                                volume_tiers=[], actor="user:setup")

        add_book = viewer.post(url("pricebook_add"), {"effective_from_0": "2027-01-01", "effective_from_1": "00:00:00"})
        change_book = viewer.post(url("pricebook_change", draft.pk),
                                  price_book_form(draft, effective_from="2026-12-01 00:00:00",
                                                  changes={"frontier/standard/input": "9.000000"}))
        add_contract = viewer.post(url("contract_add"), contract_form(acme, effective_from="2027-01-01 00:00:00"))
        change_contract = viewer.post(url("contract_change", contract.pk),
                                      contract_form(acme, effective_from="2026-11-01 00:00:00"))

        assert [r.status_code for r in (add_book, change_book, add_contract, change_contract)] == [403] * 4
        assert draft.prices.get().unit_price == Decimal("2.500000")
        contract.refresh_from_db()
        assert contract.discount_percent == Decimal(5)

    def test_cannot_publish_or_copy(self, viewer, draft):
        offered = offered_actions(viewer.get(url("pricebook_changelist")))

        response = action(viewer, "publish", draft)

        assert offered == set() and response.status_code == 200
        draft.refresh_from_db()
        assert draft.status == PriceBook.Status.DRAFT
        assert not PriceBook.objects.filter(based_on=draft).exists()


@pytest.mark.django_db
class TestPriceBookVersions:
    def test_a_manager_copies_edits_and_publishes_a_version(self, manager, published):
        before = timezone.now()

        copied = action(manager, "copy_into_draft", published, follow=False)
        draft = PriceBook.objects.get(based_on=published)
        edited = manager.post(url("pricebook_change", draft.pk), price_book_form(
            draft, effective_from="2026-12-01 00:00:00", changes={"frontier/standard/input": "3.000000"},
            deleted=("mini/standard/input",)))
        publishing = action(manager, "publish", draft)

        assert copied.status_code == 302 and copied["Location"] == url("pricebook_change", draft.pk)
        assert edited.status_code == 302
        assert [m for m in messages_of(publishing) if m[0] == "error"] == []
        draft.refresh_from_db()
        assert draft.status == PriceBook.Status.PUBLISHED and draft.published_by == "user:manager"
        assert draft.effective_from == utc(2026, 12, 1) and before <= draft.published_at <= timezone.now()
        assert {"/".join(p.key): p.unit_price for p in draft.prices.all()} == {
            "frontier/standard/input": Decimal("3.000000"), "frontier/standard/output": Decimal("10.000000")}

    def test_a_manager_adds_a_draft_with_prices(self, manager):
        data = {"effective_from_0": "2027-01-01", "effective_from_1": "00:00:00", "currency": "USD", "note": "new",
                "prices-TOTAL_FORMS": 1, "prices-INITIAL_FORMS": 0, "prices-MIN_NUM_FORMS": 0,
                "prices-MAX_NUM_FORMS": 1000, "prices-0-model_tier": "frontier", "prices-0-service_tier": "standard",
                "prices-0-token_class": "input", "prices-0-unit_price": "2.750000"}

        response = manager.post(url("pricebook_add"), data)

        assert response.status_code == 302
        book = PriceBook.objects.get(note="new")
        assert book.status == PriceBook.Status.DRAFT and book.effective_from == utc(2027, 1, 1)
        assert [("/".join(p.key), p.unit_price) for p in book.prices.all()] == [
            ("frontier/standard/input", Decimal("2.750000"))]

    @pytest.mark.parametrize(("service_tier", "token_class", "saved"), [
        ("flex", "cache_write_long", True), ("provisioned", "audio_output", True), ("premium", "input", False)])
    def test_a_price_names_a_service_tier_of_the_catalog_and_any_token_class(self, manager, service_tier,
                                                                             token_class, saved):
        data = {"effective_from_0": "2027-01-01", "effective_from_1": "00:00:00", "currency": "USD",
                "note": "tiers", "prices-TOTAL_FORMS": 1, "prices-INITIAL_FORMS": 0, "prices-MIN_NUM_FORMS": 0,
                "prices-MAX_NUM_FORMS": 1000, "prices-0-model_tier": "frontier",
                "prices-0-service_tier": service_tier, "prices-0-token_class": token_class,
                "prices-0-unit_price": "5.000000"}

        response = manager.post(url("pricebook_add"), data)

        assert (response.status_code == 302) is saved
        assert PriceBook.objects.filter(note="tiers").exists() is saved

    def test_a_copy_starts_a_day_after_its_source_but_not_in_the_past(self, manager, published):
        action(manager, "copy_into_draft", published)

        draft = PriceBook.objects.get(based_on=published)
        next_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
        assert draft.status == PriceBook.Status.DRAFT and draft.prices.count() == len(PRICES)
        assert draft.effective_from in {utc(2026, 11, 2), next_hour, next_hour + timezone.timedelta(hours=1)}
        assert draft.effective_from.minute == 0 and draft.effective_from >= utc(2026, 11, 2)

    def test_publishing_refuses_a_book_that_leaves_usage_unpriced(self, manager, draft):
        catalog_model_create(name="gpt-admin-test", tier="frontier")
        HourlyRollup.objects.create(customer_id="acme", model="gpt-admin-test", service_tier="standard",
                                    hour=utc(2026, 12, 1, 10), events=1, input_tokens=1_000, cached_input_tokens=0,
                                    output_tokens=500)

        response = action(manager, "publish", draft)

        errors = [text for level, text in messages_of(response) if level == "error"]
        assert len(errors) == 1 and "frontier/standard/output" in errors[0]
        draft.refresh_from_db()
        assert draft.status == PriceBook.Status.DRAFT and draft.published_at is None

    def test_a_published_book_shows_its_changes_against_the_previous_version(self, manager, published):
        newer = price_book_create(
            effective_from=utc(2026, 12, 1), currency="USD", actor="user:setup", as_of=utc(2026, 11, 20),
            prices=[{**PRICES[0], "unit_price": Decimal("3.000000")}, PRICES[1],
                    {"model_tier": "nano", "service_tier": "batch", "token_class": "output",
                     "unit_price": Decimal("0.100000")}])

        page = manager.get(url("pricebook_change", newer.pk)).content.decode()

        assert f"Against version {published.pk}" in page
        assert "<tr><td>frontier/standard/input</td><td>2.500000</td><td>3.000000</td></tr>" in page
        assert "<tr><td>mini/standard/input</td><td>0.400000</td><td>—</td></tr>" in page
        assert "<tr><td>nano/batch/output</td><td>—</td><td>0.100000</td></tr>" in page
        assert "frontier/standard/output" not in page.split('class="price-changes"')[1].split("</table>")[0]

    def test_a_published_book_is_read_only_even_for_a_manager(self, manager, published):
        page = manager.get(url("pricebook_change", published.pk))
        change = manager.post(url("pricebook_change", published.pk),
                              price_book_form(published, effective_from="2026-11-01 00:00:00",
                                              changes={"frontier/standard/input": "9.000000"}))
        delete = manager.get(url("pricebook_delete", published.pk))
        offered = offered_actions(manager.get(url("pricebook_changelist")))

        assert page.status_code == 200
        assert b'name="_save"' not in page.content and b'name="_continue"' not in page.content
        assert b'name="prices-0-unit_price"' not in page.content and b"2.500000" in page.content
        assert change.status_code == 403 and delete.status_code == 403
        assert offered == {"copy_into_draft", "draft_correction", "publish"}
        assert published.prices.get(model_tier="frontier", token_class="input").unit_price == Decimal("2.500000")

    def test_a_draft_must_start_on_the_hour(self, manager, draft):
        response = manager.post(url("pricebook_change", draft.pk),
                                price_book_form(draft, effective_from="2026-12-01 00:30:00"))

        assert response.status_code == 200
        assert "Must be on an hour boundary" in response.content.decode()
        draft.refresh_from_db()
        assert draft.effective_from == utc(2026, 12, 1)


@pytest.mark.django_db
class TestContracts:
    def test_a_new_version_closes_the_open_ended_one(self, manager, acme):
        earlier = contract_put(customer_id="acme", effective_from=utc(2026, 11, 1), effective_to=None,
                               discount_percent=Decimal(5), monthly_minimum=None, unit_price_overrides=[],
                               volume_tiers=[], actor="user:setup")
        key = {"model_tier": "frontier", "service_tier": "standard", "token_class": "input"}

        response = manager.post(url("contract_add"), contract_form(
            acme, effective_from="2027-01-01 00:00:00", overrides=[{**key, "unit_price": "2.000000"}],
            bands=[{**key, "tokens_up_to": "1000000", "unit_price": "2.000000"},
                   {**key, "tokens_up_to": "", "unit_price": "1.500000"}]))

        assert response.status_code == 302, response.context["errors"]
        later = Contract.objects.get(customer=acme, effective_from=utc(2027, 1, 1))
        earlier.refresh_from_db()
        assert earlier.effective_to == utc(2027, 1, 1)
        assert later.created_by == "user:manager" and later.discount_percent == Decimal("10.00")
        assert [p.unit_price for p in later.unit_price_overrides.all()] == [Decimal("2.000000")]
        assert [(b.tokens_up_to, b.unit_price) for b in later.volume_bands.all()] == [
            (1_000_000, Decimal("2.000000")), (None, Decimal("1.500000"))]

    def test_an_overlapping_version_is_refused_on_the_form(self, manager, acme):
        contract_put(customer_id="acme", effective_from=utc(2026, 11, 1), effective_to=utc(2027, 1, 1),
                     discount_percent=Decimal(5), monthly_minimum=None, unit_price_overrides=[], volume_tiers=[],
                     actor="user:setup")

        response = manager.post(url("contract_add"), contract_form(acme, effective_from="2026-12-01 00:00:00"))

        assert response.status_code == 200 and "Overlaps the version from 2026-11-01" in response.content.decode()
        assert not Contract.objects.filter(customer=acme, effective_from=utc(2026, 12, 1)).exists()

    def test_an_edit_that_would_overlap_is_refused_on_the_form(self, manager, acme):
        for start, end in ((utc(2026, 11, 1), utc(2026, 12, 1)), (utc(2026, 12, 1), None)):
            contract_put(customer_id="acme", effective_from=start, effective_to=end, discount_percent=Decimal(5),
                         monthly_minimum=None, unit_price_overrides=[], volume_tiers=[], actor="user:setup")
        first = Contract.objects.get(customer=acme, effective_from=utc(2026, 11, 1))

        response = manager.post(url("contract_change", first.pk),
                                contract_form(acme, effective_from="2026-11-01 00:00:00",
                                              effective_to="2027-01-01 00:00:00"))

        assert response.status_code == 200
        assert "Overlaps the version from 2026-12-01 00:00 UTC (open-ended)" in response.content.decode()
        first.refresh_from_db()
        assert first.effective_to == utc(2026, 12, 1)

    def test_bands_must_end_open_ended(self, manager, acme):
        key = {"model_tier": "frontier", "service_tier": "standard", "token_class": "input"}

        response = manager.post(url("contract_add"), contract_form(
            acme, effective_from="2027-01-01 00:00:00",
            bands=[{**key, "tokens_up_to": "1000000", "unit_price": "2.000000"}]))

        assert response.status_code == 200 and "exactly one open-ended band" in response.content.decode()
        assert not Contract.objects.filter(customer=acme).exists()


@pytest.mark.django_db
class TestCreditLedger:
    def test_a_grant_is_added_by_the_service_and_never_changed(self, manager, acme):
        before = timezone.now()

        added = manager.post(url("creditentry_add"), {"customer": acme.pk, "amount": "100.00", "reason": "onboarding"})
        entry = CreditEntry.objects.get(customer=acme)
        page = manager.get(url("creditentry_change", entry.pk))
        change = manager.post(url("creditentry_change", entry.pk),
                              {"customer": acme.pk, "amount": "900.00", "reason": "onboarding"})
        delete = manager.post(url("creditentry_delete", entry.pk), {"post": "yes"})

        assert added.status_code == 302
        assert entry.amount == Decimal("100.00") and entry.created_by == "user:manager"
        assert before <= entry.created_at <= timezone.now()
        assert page.status_code == 200 and b'name="_save"' not in page.content and b"onboarding" in page.content
        assert change.status_code == 403 and delete.status_code == 403
        entry.refresh_from_db()
        assert entry.amount == Decimal("100.00")

    def test_a_grant_must_be_positive(self, manager, acme):
        response = manager.post(url("creditentry_add"), {"customer": acme.pk, "amount": "-5.00", "reason": "oops"})

        assert response.status_code == 200 and "must be positive" in response.content.decode()
        assert not CreditEntry.objects.filter(customer=acme).exists()

    def test_the_list_filters_by_customer_and_a_viewer_cannot_grant(self, viewer, acme):
        globex = Customer.objects.create(customer_id="globex", name="Globex")
        for customer in (acme, globex):
            CreditEntry.objects.create(customer=customer, amount=Decimal(10), reason=f"grant to {customer.name}",
                                       created_by="user:setup", created_at=utc(2026, 11, 1))

        listed = viewer.get(url("creditentry_changelist"), {"customer__id__exact": acme.pk})
        added = viewer.post(url("creditentry_add"), {"customer": acme.pk, "amount": "5.00", "reason": "sneaky"})

        assert listed.status_code == 200
        assert "grant to Acme" in listed.content.decode() and "grant to Globex" not in listed.content.decode()
        assert added.status_code == 403
        assert not CreditEntry.objects.filter(reason="sneaky").exists()
