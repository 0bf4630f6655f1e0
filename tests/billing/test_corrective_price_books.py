"""Corrective price book versions (issue #11): a correction is a new published version at the
instant of the one it corrects, with the next revision; it supersedes that one for rating,
which stays published and unchanged. Over REST and in the admin."""

from datetime import date, datetime
from decimal import Decimal

import pytest

from billing.models import AuditEntry, Invoice, PriceBook
from billing.selectors import price_schedule
from billing.services.invoices import invoice_drafts_refresh, invoices_issue
from billing.services.price_books import price_book_create
from metering.models import HourlyRollup
from tests.billing.test_admin import action, messages_of, offered_actions, price_book_form, url
from tests.conftest import utc

pytestmark = pytest.mark.django_db

FRONTIER_INPUT = ("frontier", "standard", "input")
BASE = {("frontier", "input"): "2.50", ("frontier", "output"): "15.00", ("mini", "input"): "0.75",
        ("mini", "output"): "4.50", ("nano", "input"): "0.20", ("nano", "output"): "1.25"}


def prices(**changed: str) -> list[dict]:
    """Standard-tier prices for input and output; `frontier_input="2.00"` changes one."""
    return [{"model_tier": tier, "service_tier": "standard", "token_class": cls,
             "unit_price": changed.get(f"{tier}_{cls}", price)} for (tier, cls), price in BASE.items()]


def without(items: list[dict], tier: str, cls: str) -> list[dict]:
    return [p for p in items if (p["model_tier"], p["token_class"]) != (tier, cls)]


def rollup(model: str, hour: datetime, *, input_tokens: int, output: int = 0) -> None:
    HourlyRollup.objects.create(customer_id="acme", model=model, service_tier="standard", region="", cluster="",
                                hour=hour, events=1, input_tokens=input_tokens, cached_input_tokens=0,
                                output_tokens=output)


@pytest.fixture
def admin_api(api_client_for):
    return api_client_for("admin")


@pytest.fixture
def post(catalog, admin_api):
    def send(**body):
        return admin_api.post("/api/v1/price-books", body, format="json")

    return send


@pytest.fixture
def january(post):
    """The version in force since 2026-01-01: frontier standard input at 2.50."""
    response = post(effective_from="2026-01-01T00:00:00Z", prices=prices())
    assert response.status_code == 201, response.json()
    return response.json()


def usage_lines(invoice: Invoice) -> list[tuple[Decimal, Decimal]]:
    return [(line.unit_price, line.amount) for line in invoice.lines.filter(kind="usage")]


def listed(admin_api) -> dict[int, dict]:
    return {book["id"]: book for book in admin_api.get("/api/v1/price-books").json()["results"]}


class TestCorrectionOverRest:
    def test_a_correction_supersedes_the_corrected_version_which_stays_unchanged(self, january, post, admin_api):
        original = PriceBook.objects.get(pk=january["id"])
        original_prices = sorted((p.key, p.unit_price) for p in original.prices.all())

        response = post(corrects=january["id"], prices=prices(frontier_input="2.00"))

        assert response.status_code == 201, response.json()
        correction = response.json()
        assert (correction["effective_from"], correction["revision"], correction["corrects"]) == (
            january["effective_from"], 1, january["id"])
        assert correction["superseded_by"] is None and correction["status"] == "published"
        assert price_schedule().price_at(FRONTIER_INPUT, utc(2026, 3, 2, 10)) == Decimal("2.00")
        books = listed(admin_api)
        assert books[january["id"]]["superseded_by"] == correction["id"]
        assert books[january["id"]]["revision"] == 0 and books[january["id"]]["corrects"] is None
        kept = PriceBook.objects.get(pk=january["id"])
        assert (kept.status, kept.published_at, kept.effective_from) == (
            original.status, original.published_at, original.effective_from)
        assert sorted((p.key, p.unit_price) for p in kept.prices.all()) == original_prices

    def test_a_draft_invoice_refreshed_after_the_correction_uses_the_corrected_price(self, january, post):
        rollup("gpt-5.4", utc(2026, 3, 2, 10), input_tokens=1_000_000)
        [draft] = invoice_drafts_refresh(customer_ids=["acme"], period=date(2026, 3, 1), as_of=utc(2026, 3, 3))
        before = usage_lines(draft)

        post(corrects=january["id"], prices=prices(frontier_input="2.00"))
        [refreshed] = invoice_drafts_refresh(customer_ids=["acme"], period=date(2026, 3, 1), as_of=utc(2026, 3, 4))

        assert before == [(Decimal("2.500000"), Decimal("2.50"))]
        assert refreshed.pk == draft.pk
        assert usage_lines(refreshed) == [(Decimal("2.000000"), Decimal("2.00"))]

    def test_a_second_correction_of_the_same_version_conflicts_and_the_newest_is_corrected(self, january, post,
                                                                                             admin_api):
        first = post(corrects=january["id"], prices=prices(frontier_input="2.00")).json()

        again = post(corrects=january["id"], prices=prices(frontier_input="1.00"))
        newest = post(corrects=first["id"], prices=prices(frontier_input="2.25"))

        assert again.status_code == 409
        assert again.json()["type"].endswith("/price_book_conflict") and again.json()["superseded_by"] == first["id"]
        assert "correct the newest revision" in again.json()["detail"]
        assert newest.status_code == 201 and newest.json()["revision"] == 2
        assert newest.json()["corrects"] == first["id"]
        assert price_schedule().price_at(FRONTIER_INPUT, utc(2026, 3, 2, 10)) == Decimal("2.25")
        books = listed(admin_api)
        assert [books[b]["superseded_by"] for b in (january["id"], first["id"])] == [first["id"], newest.json()["id"]]
        assert not PriceBook.objects.filter(prices__unit_price=Decimal("1.00"), effective_from=utc(2026, 1, 1))

    def test_a_draft_is_not_corrected(self, january, post):
        draft = price_book_create(effective_from=utc(2026, 6, 1), currency="USD", prices=prices(), actor="test",
                                  as_of=utc(2026, 5, 1), publish=False)

        response = post(corrects=draft.pk, prices=prices(frontier_input="2.00"))

        assert response.status_code == 409 and "draft" in response.json()["detail"]
        assert not draft.corrections.exists()

    @pytest.mark.parametrize(("body", "field"), [
        ({"effective_from": "2026-02-01T00:00:00Z"}, "effective_from"),
        ({"currency": "EUR"}, "currency"),
        ({"corrects": 999_999}, "corrects"),
    ])
    def test_a_correction_keeps_the_instant_and_currency_of_an_existing_version(self, january, post, body, field):
        response = post(**{"corrects": january["id"], "prices": prices(frontier_input="2.00"), **body})

        assert response.status_code == 422
        assert list(response.json()["errors"]) == [field]
        assert not PriceBook.objects.filter(corrects_id=january["id"]).exists()

    def test_naming_the_corrected_instant_is_allowed_and_a_new_version_needs_an_instant(self, january, post):
        explicit = post(corrects=january["id"], effective_from=january["effective_from"],
                        prices=prices(frontier_input="2.00"))
        no_instant = post(prices=prices())

        assert explicit.status_code == 201 and explicit.json()["revision"] == 1
        assert no_instant.status_code == 422 and list(no_instant.json()["errors"]) == ["effective_from"]

    def test_a_correction_must_price_every_key_used_in_the_range_it_governs(self, january, post):
        rollup("gpt-5.4-nano", utc(2026, 3, 2, 10), input_tokens=100, output=5)

        response = post(corrects=january["id"], prices=without(prices(), "nano", "output"))

        assert response.status_code == 422 and response.json()["type"].endswith("/price_book_incomplete")
        assert response.json()["errors"]["prices"] == ["nano/standard/output"]
        assert not PriceBook.objects.filter(corrects_id=january["id"]).exists()

    def test_usage_after_the_next_version_starts_does_not_bind_a_correction(self, january, post):
        may = post(effective_from="2026-05-01T00:00:00Z", prices=prices()).json()
        rollup("gpt-5.4-nano", utc(2026, 6, 2, 10), input_tokens=100, output=5)  # priced by May's version

        of_january = post(corrects=january["id"], prices=without(prices(), "nano", "output"))
        of_may = post(corrects=may["id"], prices=without(prices(), "nano", "output"))

        assert of_january.status_code == 201, of_january.json()
        assert of_may.status_code == 422 and of_may.json()["errors"]["prices"] == ["nano/standard/output"]

    def test_publishing_a_correction_is_audited_with_what_it_corrects(self, january, post):
        correction = post(corrects=january["id"], prices=prices(frontier_input="2.00")).json()

        entry = AuditEntry.objects.get(action="price_book.publish", object_id=str(correction["id"]))

        assert entry.after["corrects"] == january["id"] and entry.after["revision"] == 1
        assert entry.after["effective_from"] == "2026-01-01T00:00:00+00:00"
        assert entry.after["prices"]["frontier/standard/input"] == "2.000000"


class TestPastVersions:
    def test_a_new_version_from_the_middle_of_a_finalized_month_is_allowed(self, january, post):
        rollup("gpt-5.4", utc(2026, 3, 2, 10), input_tokens=1_000_000)
        invoice_drafts_refresh(customer_ids=["acme"], period=date(2026, 3, 1), as_of=utc(2026, 4, 1))
        [issued] = invoices_issue(customer_ids=["acme"], period=date(2026, 3, 1), actor="test", as_of=utc(2026, 4, 2))

        response = post(effective_from="2026-03-15T00:00:00Z", prices=prices(frontier_input="3.00"))

        assert response.status_code == 201, response.json()
        assert response.json()["revision"] == 0 and response.json()["corrects"] is None
        schedule = price_schedule()
        assert schedule.price_at(FRONTIER_INPUT, utc(2026, 3, 14, 23)) == Decimal("2.50")
        assert schedule.price_at(FRONTIER_INPUT, utc(2026, 3, 15)) == Decimal("3.00")
        issued.refresh_from_db()
        assert issued.status == Invoice.Status.FINALIZED and issued.total == Decimal("2.50")

    def test_a_new_version_at_a_published_instant_conflicts_and_points_at_corrections(self, january, post):
        response = post(effective_from="2026-01-01T00:00:00Z", prices=prices(frontier_input="2.00"))

        assert response.status_code == 409 and "publish a correction" in response.json()["detail"]
        assert price_schedule().price_at(FRONTIER_INPUT, utc(2026, 3, 2, 10)) == Decimal("2.50")


ADMIN_PRICES = [
    {"model_tier": "frontier", "service_tier": "standard", "token_class": "input", "unit_price": Decimal("2.500000")},
    {"model_tier": "frontier", "service_tier": "standard", "token_class": "output", "unit_price": Decimal("10.000000")},
]


@pytest.fixture
def published(db):
    return price_book_create(effective_from=utc(2026, 11, 1), currency="USD", prices=ADMIN_PRICES, note="launch",
                             actor="user:setup", as_of=utc(2026, 10, 20))


class TestCorrectionInTheAdmin:
    def test_a_manager_drafts_a_correction_edits_and_publishes_it(self, manager, published):
        drafted = action(manager, "draft_correction", published, follow=False)
        draft = PriceBook.objects.get(corrects=published)
        page = manager.get(url("pricebook_change", draft.pk)).content.decode()
        edited = manager.post(url("pricebook_change", draft.pk), price_book_form(
            draft, effective_from="2026-12-01 00:00:00", changes={"frontier/standard/input": "2.200000"}))
        changes = manager.get(url("pricebook_change", draft.pk)).content.decode()
        publishing = action(manager, "publish", draft)

        assert drafted.status_code == 302 and drafted["Location"] == url("pricebook_change", draft.pk)
        assert 'value="publish"' in page and 'value="draft_correction"' not in page
        assert edited.status_code == 302
        assert f"Against version {published.pk} (revision 0), which it corrects" in changes
        assert "<tr><td>frontier/standard/input</td><td>2.500000</td><td>2.200000</td></tr>" in changes
        assert [m for m in messages_of(publishing) if m[0] == "error"] == []
        draft.refresh_from_db()
        assert draft.status == PriceBook.Status.PUBLISHED and draft.published_by == "user:manager"
        assert (draft.effective_from, draft.revision, draft.currency) == (utc(2026, 11, 1), 1, "USD")
        assert price_schedule().price_at(FRONTIER_INPUT, utc(2026, 11, 5)) == Decimal("2.200000")
        assert published.prices.get(token_class="input").unit_price == Decimal("2.500000")
        audited = AuditEntry.objects.get(action="price_book.publish", object_id=str(draft.pk)).after
        assert (audited["corrects"], audited["revision"]) == (published.pk, 1)

    def test_the_change_list_shows_revisions_and_marks_superseded_versions(self, manager, published):
        correction = price_book_create(effective_from=published.effective_from, currency="USD", prices=ADMIN_PRICES,
                                       actor="user:setup", as_of=utc(2026, 11, 20), corrects=published.pk)

        rows = {row.pk: row for row in manager.get(url("pricebook_changelist")).context["cl"].result_list}
        old_page = manager.get(url("pricebook_change", published.pk)).content.decode()
        new_page = manager.get(url("pricebook_change", correction.pk)).content.decode()

        assert (rows[published.pk].revision, rows[published.pk].superseded_by_id) == (0, correction.pk)
        assert (rows[correction.pk].revision, rows[correction.pk].superseded_by_id) == (1, None)
        assert f'<a href="{url("pricebook_change", correction.pk)}">version {correction.pk}</a>' in old_page
        assert 'value="draft_correction"' not in old_page and 'value="draft_correction"' in new_page

    def test_a_superseded_version_is_not_corrected_again(self, manager, published):
        price_book_create(effective_from=published.effective_from, currency="USD", prices=ADMIN_PRICES,
                          actor="user:setup", as_of=utc(2026, 11, 20), corrects=published.pk)

        response = action(manager, "draft_correction", published)

        errors = [text for level, text in messages_of(response) if level == "error"]
        assert len(errors) == 1 and "correct the newest revision" in errors[0]
        assert published.corrections.count() == 1

    def test_a_draft_correction_overtaken_by_another_is_not_published(self, manager, published):
        action(manager, "draft_correction", published)
        action(manager, "draft_correction", published)
        first, second = PriceBook.objects.filter(corrects=published).order_by("pk")

        action(manager, "publish", first)
        response = action(manager, "publish", second)

        errors = [text for level, text in messages_of(response) if level == "error"]
        assert len(errors) == 1 and f"already corrected by version {first.pk}" in errors[0]
        second.refresh_from_db()
        assert second.status == PriceBook.Status.DRAFT

    def test_a_new_version_is_compared_with_the_newest_revision_before_it(self, manager, published):
        correction = price_book_create(
            effective_from=published.effective_from, currency="USD", actor="user:setup", as_of=utc(2026, 11, 20),
            prices=[{**ADMIN_PRICES[0], "unit_price": Decimal("2.200000")}, ADMIN_PRICES[1]], corrects=published.pk)
        later = price_book_create(effective_from=utc(2026, 12, 1), currency="USD", prices=ADMIN_PRICES,
                                  actor="user:setup", as_of=utc(2026, 11, 21))

        page = manager.get(url("pricebook_change", later.pk)).content.decode()

        assert f"Against version {correction.pk}, in force from" in page
        assert "<tr><td>frontier/standard/input</td><td>2.200000</td><td>2.500000</td></tr>" in page

    def test_a_viewer_cannot_draft_a_correction(self, viewer, published):
        offered = offered_actions(viewer.get(url("pricebook_changelist")))
        page = viewer.get(url("pricebook_change", published.pk)).content.decode()

        response = action(viewer, "draft_correction", published)

        assert "draft_correction" not in offered and 'value="draft_correction"' not in page
        assert response.status_code in (200, 403)
        assert not PriceBook.objects.filter(corrects=published).exists()
