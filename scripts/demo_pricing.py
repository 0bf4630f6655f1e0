"""The demo's pricing step: list prices, a mid-month price change, two contracts, a
credit grant, and the resulting invoice previews (DESIGN.md §2–§3)."""

from datetime import datetime, timedelta
from decimal import Decimal

LIST_PRICES = {  # USD per 1M tokens, standard service tier (issue #3)
    "frontier": {"input": "2.50", "cached_input": "0.25", "output": "15.00"},
    "mini": {"input": "0.75", "cached_input": "0.075", "output": "4.50"},
    "nano": {"input": "0.20", "cached_input": "0.02", "output": "1.25"},
}
SERVICE_TIER_FACTORS = {"standard": Decimal(1), "batch": Decimal("0.5"), "priority": Decimal(2)}
MID_MONTH_CHANGE = ("frontier", "output", "12.00")  # a price cut from the 15th on


def price_list(*, change: tuple[str, str, str] | None = None) -> list[dict]:
    prices = []
    for tier, classes in LIST_PRICES.items():
        for token_class, price in classes.items():
            if change and change[:2] == (tier, token_class):
                price = change[2]
            for service_tier, factor in SERVICE_TIER_FACTORS.items():
                prices.append({"model_tier": tier, "service_tier": service_tier, "token_class": token_class,
                               "unit_price": Decimal(price) * factor})
    return prices


def pricing_set_up(*, start: datetime, end: datetime, as_of: datetime) -> datetime:
    """Publish the price books, sign the contracts, grant credit. Returns the change instant."""
    from billing.services.contracts import contract_put
    from billing.services.credits import credit_grant
    from billing.services.price_books import price_book_create

    change_at = start + timedelta(days=14)
    price_book_create(effective_from=start - timedelta(days=365), currency="USD", prices=price_list(),
                      note="list prices", actor="demo", as_of=as_of)
    price_book_create(effective_from=change_at, currency="USD", prices=price_list(change=MID_MONTH_CHANGE),
                      note="frontier output price cut", actor="demo", as_of=as_of)
    contract_put(customer_id="acme", effective_from=start - timedelta(days=90), effective_to=None,
                 discount_percent=Decimal("10.00"), monthly_minimum=Decimal("2500.00"), unit_price_overrides=[],
                 volume_tiers=[], actor="demo")
    contract_put(customer_id="globex", effective_from=start, effective_to=None, discount_percent=Decimal(0),
                 monthly_minimum=None, unit_price_overrides=[], actor="demo", volume_tiers=[
                     {"model_tier": "frontier", "service_tier": "standard", "token_class": "input",
                      "bands": [{"up_to": 10_000_000, "unit_price": Decimal("2.50")},
                                {"up_to": None, "unit_price": Decimal("2.00")}]}])
    credit_grant(customer_id="acme", amount=Decimal("500.00"), reason="demo prepaid credit", actor="demo",
                 as_of=as_of)
    return change_at


def invoices_print(*, customers: list[str], start: datetime, end: datetime, as_of: datetime) -> None:
    from billing.rating.money import money_text as money
    from billing.rating.money import unit_price_text
    from billing.selectors import upcoming_invoice

    change_at = pricing_set_up(start=start, end=end, as_of=as_of)
    print(f"price books: list prices; from {change_at:%Y-%m-%d %H:%M} UTC frontier output "
          f"{LIST_PRICES['frontier']['output']} → {MID_MONTH_CHANGE[2]} per 1M (batch ½, priority ×2)")
    print("contracts: acme 10% discount, 2,500.00 monthly minimum, 500.00 prepaid credit; "
          "globex frontier standard input 2.50 up to 10M tokens, 2.00 beyond")
    previews = {c: upcoming_invoice(customer_id=c, as_of=end - timedelta(hours=1))[2] for c in customers}
    for customer_id in ("acme", "globex"):
        print(f"\n-- invoice preview {start:%Y-%m} for {customer_id} (GET /customers/{customer_id}/upcoming-invoice "
              "for that period)")
        print(f"{'kind':10} {'model':13} {'service':9} {'class':13} {'days':11} {'tokens':>13} {'unit price':>11} "
              f"{'amount':>11}")
        for line in previews[customer_id].lines:
            tokens = f"{line.tokens:,}" if line.tokens else ""
            days = f"{line.usage_start:%m-%d}–{line.usage_end - timedelta(microseconds=1):%m-%d}" \
                if line.usage_start else ""
            print(f"{line.kind:10} {line.model:13} {line.service_tier:9} {line.token_class:13} {days:11} {tokens:>13} "
                  f"{unit_price_text(line.unit_price) or '':>11} {money(line.amount):>11}")
        print(f"{'total':>85} {money(previews[customer_id].total):>11}")
    print(f"\n-- every customer, {start:%Y-%m}")
    print(f"{'customer':10} {'usage':>11} {'discount':>10} {'minimum':>10} {'credits':>10} {'total':>11}")
    for customer_id, rated in previews.items():
        by_kind = {kind: sum((l.amount for l in rated.lines if l.kind == kind), Decimal(0))
                   for kind in ("usage", "discount", "minimum", "credits")}
        print(f"{customer_id:10} {money(by_kind['usage']):>11} {money(by_kind['discount']):>10} "
              f"{money(by_kind['minimum']):>10} {money(by_kind['credits']):>10} {money(rated.total):>11}")
