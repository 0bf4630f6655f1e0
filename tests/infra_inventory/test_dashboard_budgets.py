"""The finance dashboard's "Customers nearest their budget" panel: the budgets API it reads
(this month's spend as a share of each budget, largest first) and, in headless Chromium,
the table it draws from it (see test_dashboard.py for the browser's requirements)."""

from decimal import Decimal

import pytest

from billing.models import Spend
from billing.selectors import month_bounds
from billing.services.spend import spends_forget
from metering.models import Customer
from metering.services import utc_now
from tests.billing.conftest import list_prices  # noqa: F401 (fixture)
from tests.billing.test_admin_spend import put, spent
from tests.infra_inventory.test_dashboard import CHROMIUM, CHROMIUM_ARGS, DASHBOARD

BUDGETS = "/api/v1/budgets/nearest-limit"


@pytest.fixture
def budgets(list_prices):
    """This month: initech at 100% of a hard budget (refused), globex at 80%, acme at 25%,
    hooli with a budget and no usage, umbrella spending without a budget."""
    now = utc_now()
    for customer_id in ("initech", "hooli", "umbrella"):
        Customer.objects.create(customer_id=customer_id, name=customer_id.title())
    put("acme", "40.00")
    put("globex", "12.50")
    put("initech", "5.00", hard=True)
    put("hooli", "100.00")
    spent("acme", input_millions=4, now=now)  # 10.00
    spent("globex", input_millions=4, now=now)  # 10.00
    spent("initech", input_millions=2, now=now)  # 5.00
    spent("umbrella", input_millions=40, now=now)  # 100.00
    return now


@pytest.mark.django_db
class TestApi:
    def test_lists_budgets_by_share_of_the_limit(self, viewer, budgets):
        response = viewer.get(BUDGETS, HTTP_ACCEPT="application/json")

        assert response.status_code == 200, response.content
        body = response.json()
        assert body["next"] is None
        assert [(r["customer_id"], r["spend"], r["monthly_limit"], r["percent_of_limit"], r["hard"], r["allowed"])
                for r in body["results"]] == [
            ("initech", "5.00", "5.00", "100.00", True, False),
            ("globex", "10.00", "12.50", "80.00", False, True),
            ("acme", "10.00", "40.00", "25.00", False, True),
            ("hooli", "0.00", "100.00", "0.00", False, True),
        ]
        assert {r["period"] for r in body["results"]} == {f"{budgets:%Y-%m}"}

    def test_takes_the_top_few(self, viewer, budgets):
        body = viewer.get(BUDGETS, {"limit": 2}, HTTP_ACCEPT="application/json").json()

        assert [r["customer_id"] for r in body["results"]] == ["initech", "globex"]

    def test_computes_a_spend_not_computed_yet(self, viewer, budgets):
        spends_forget(customer_ids=["globex"], as_of=budgets)  # as after a repricing

        body = viewer.get(BUDGETS, HTTP_ACCEPT="application/json").json()

        assert [r["customer_id"] for r in body["results"]][:2] == ["initech", "globex"]
        period = month_bounds(budgets)[0].date()
        assert Spend.objects.get(customer__customer_id="globex", period=period).spend == Decimal("10.00")

    def test_a_limit_out_of_range_is_refused(self, viewer, budgets):
        response = viewer.get(BUDGETS, {"limit": 0}, HTTP_ACCEPT="application/json")

        assert response.status_code == 422


@pytest.mark.django_db
def test_the_page_wires_the_budgets_api_in(viewer):
    page = viewer.get(DASHBOARD).content.decode()

    assert f'data-budgets-url="{BUDGETS}"' in page
    assert 'id="fd-budgets"' in page


@pytest.mark.django_db(transaction=True)
def test_the_panel_lists_customers_by_share_of_their_budget(live_server, viewer, budgets):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_cookies([{"name": "sessionid", "value": viewer.cookies["sessionid"].value,
                                  "url": live_server.url}])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{live_server.url}{DASHBOARD}")
            page.wait_for_function("() => document.getElementById('fd-budgets').dataset.state", timeout=20_000)
            state = page.locator("#fd-budgets").get_attribute("data-state")
            rows = page.locator("#fd-budgets tr.fd-budget")
            customers = rows.evaluate_all("rows => rows.map(r => r.dataset.customer)")
            first = rows.first.locator("th, td").all_text_contents()
        finally:
            browser.close()

    assert errors == [] and state == "ready"
    assert customers == ["initech", "globex", "acme", "hooli"]
    assert first == ["initech (Initech)", "$5.00", "$5.00", "100.00%", "yes", "no (refused)"]
