"""Price book versions: publish a new one, or copy the current one into a draft."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.models import Price, PriceBook
from billing.rating import PriceMissing
from billing.selectors import price_schedule
from billing.services.audit import audit_record
from config.api import DomainError
from metering import selectors as metering_selectors


class PriceBookIncomplete(DomainError):
    code = "price_book_incomplete"
    status = 422
    title = "Usage would be left without a price"


class PriceBookConflict(DomainError):
    code = "price_book_conflict"
    status = 409
    title = "Conflicts with the current price books"


def _uncovered_keys(book: PriceBook, prices: dict) -> list[str]:
    """Price keys with usage that this book would price, but does not.

    Checked from one lateness window before the book's start, since usage served then
    may still be arriving and usage patterns carry on.
    """
    schedule = price_schedule()
    lookback = book.effective_from - timedelta(days=settings.USAGE_LATENESS_DAYS)
    later = [b.effective_from for b in schedule.books if b.effective_from > book.effective_from]
    until = min(later, default=None)
    missing = set()
    for model, service_tier, token_class, hour in metering_selectors.usage_keys_since(lookback):
        if until is not None and hour >= until:
            continue
        try:
            tier = schedule.tier_at(model, max(hour, book.effective_from))
        except PriceMissing:
            tier = f"(no tier for {model})"
        if (tier, service_tier, token_class) not in prices:
            missing.add(f"{tier}/{service_tier}/{token_class}")
    return sorted(missing)


@transaction.atomic
def price_book_publish(*, price_book_id: int, actor: str, as_of: datetime) -> PriceBook:
    book = PriceBook.objects.select_for_update().get(pk=price_book_id)
    if book.status != PriceBook.Status.DRAFT:
        raise PriceBookConflict(f"Price book {book.pk} is already published.")
    prices = {p.key: p.unit_price for p in book.prices.all()}
    missing = _uncovered_keys(book, prices)
    if missing:
        raise PriceBookIncomplete(
            f"Usage exists without a price in this book: {', '.join(missing)}.", errors={"prices": missing})
    book.status, book.published_at, book.published_by = PriceBook.Status.PUBLISHED, as_of, actor
    try:
        with transaction.atomic():
            book.save(update_fields=["status", "published_at", "published_by"])
    except IntegrityError as exc:
        raise PriceBookConflict(f"A published price book already starts at {book.effective_from.isoformat()}.") from exc
    audit_record(actor=actor, action="price_book.publish", obj=book, before={"status": "draft"}, at=as_of,
                 after={"status": "published", "effective_from": book.effective_from.isoformat(),
                        "prices": {"/".join(k): f"{v}" for k, v in sorted(prices.items())}})
    return book


@transaction.atomic
def price_book_create(*, effective_from: datetime, currency: str, prices: Iterable[dict], note: str = "",
                      actor: str, as_of: datetime, publish: bool = True) -> PriceBook:
    """A new version with the given prices; published at once unless `publish` is False."""
    book = PriceBook.objects.create(effective_from=effective_from, currency=currency, note=note)
    Price.objects.bulk_create(Price(price_book=book, **p) for p in prices)
    return price_book_publish(price_book_id=book.pk, actor=actor, as_of=as_of) if publish else book


@transaction.atomic
def price_book_draft_from(*, price_book_id: int, effective_from: datetime) -> PriceBook:
    """Copy a version into a new draft to edit and publish."""
    source = PriceBook.objects.get(pk=price_book_id)
    draft = PriceBook.objects.create(effective_from=effective_from, currency=source.currency, based_on=source,
                                     note=f"copy of version {source.pk}")
    Price.objects.bulk_create(
        Price(price_book=draft, model_tier=p.model_tier, service_tier=p.service_tier, token_class=p.token_class,
              unit_price=p.unit_price)
        for p in source.prices.all()
    )
    return draft


def price_book_changes(*, old: PriceBook | None, new: PriceBook) -> list[tuple[str, Decimal | None, Decimal | None]]:
    """(key, old price, new price) for every key whose price differs between two versions."""
    before = {p.key: p.unit_price for p in old.prices.all()} if old else {}
    after = {p.key: p.unit_price for p in new.prices.all()}
    return [("/".join(key), before.get(key), after.get(key))
            for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]
