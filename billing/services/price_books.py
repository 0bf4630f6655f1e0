"""Price book versions: publish a new one, copy one into a draft, or correct a published one.

A corrective version (`corrects`) starts at the instant of the version it corrects, with the
next revision, and supersedes it from there until the next later instant; the corrected one
stays published and unchanged. Only the newest revision at an instant is corrected, so the
revisions at an instant form one chain and the rating schedule takes its last link.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.models import Price, PriceBook
from billing.rating import PriceMissing, PriceSchedule
from billing.selectors import price_schedule
from billing.services.audit import audit_record
from billing.services.spend import spends_forget
from metering.projections import usage_boundary_add
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


class PriceBookCorrectionMismatch(DomainError):
    code = "price_book_correction_mismatch"
    status = 422
    title = "A correction differs from the version it corrects where it may not"


def _governed_until(schedule: PriceSchedule, book: PriceBook) -> datetime | None:
    """Where the next published instant after the book's starts (None: open-ended). A
    corrective version shares its instant with the versions it supersedes, so only strictly
    later instants end what it governs."""
    return min((b.effective_from for b in schedule.books if b.effective_from > book.effective_from), default=None)


def _uncovered_keys(book: PriceBook, prices: dict) -> list[str]:
    """Price keys with usage that this book would price, but does not: over what it governs,
    [its effective_from, the next later effective_from), the same range for a correction as
    for the version it replaces.

    Also checked from one lateness window before the book's start, since usage served then
    may still be arriving and usage patterns carry on (a correction thus needs at least what
    the version it corrects needed).
    """
    schedule = price_schedule()
    lookback = book.effective_from - timedelta(days=settings.USAGE_LATENESS_DAYS)
    until = _governed_until(schedule, book)
    missing = set()
    for model, service_tier, token_class, hour in metering_selectors.usage_keys_since(lookback, until=until):
        try:
            tier = schedule.tier_at(model, max(hour, book.effective_from))
        except PriceMissing:
            tier = f"(no tier for {model})"
        if (tier, service_tier, token_class) not in prices:
            missing.add(f"{tier}/{service_tier}/{token_class}")
    return sorted(missing)


def _correctable(corrected: PriceBook, *, by: PriceBook | None = None) -> None:
    """Only the newest published revision at an instant is corrected (by `by`, if drafted)."""
    if corrected.status != PriceBook.Status.PUBLISHED:
        raise PriceBookConflict(f"Version {corrected.pk} is a draft: edit it instead of correcting it.")
    newer = corrected.corrections.filter(status=PriceBook.Status.PUBLISHED)
    if by is not None:
        newer = newer.exclude(pk=by.pk)
    if (newer := newer.first()) is not None:
        raise PriceBookConflict(f"Version {corrected.pk} is already corrected by version {newer.pk} "
                                f"(revision {newer.revision}): correct the newest revision instead.",
                                extra={"superseded_by": newer.pk})


def _correction_matches(book: PriceBook, corrected: PriceBook) -> None:
    errors = {}
    if book.effective_from != corrected.effective_from:
        errors["effective_from"] = [f"A correction starts where version {corrected.pk} starts: "
                                    f"{corrected.effective_from.isoformat()}."]
    if book.currency != corrected.currency:
        errors["currency"] = [f"A correction keeps the currency of version {corrected.pk}: {corrected.currency}."]
    if book.revision != corrected.revision + 1:
        errors["revision"] = [f"A correction of version {corrected.pk} is revision {corrected.revision + 1}."]
    if errors:
        raise PriceBookCorrectionMismatch(
            f"Price book {book.pk or '(new)'} does not match version {corrected.pk}, which it corrects.", errors=errors)


def _locked(price_book_id: int) -> tuple[PriceBook, PriceBook | None]:
    """The book and the version it corrects, locked in primary-key order."""
    corrects_id = PriceBook.objects.values_list("corrects_id", flat=True).get(pk=price_book_id)
    rows = {b.pk: b for b in PriceBook.objects.select_for_update()
            .filter(pk__in=[price_book_id, corrects_id]).order_by("pk")}
    return rows[price_book_id], rows.get(corrects_id)


@transaction.atomic
def price_book_publish(*, price_book_id: int, actor: str, as_of: datetime) -> PriceBook:
    book, corrected = _locked(price_book_id)
    if book.status != PriceBook.Status.DRAFT:
        raise PriceBookConflict(f"Price book {book.pk} is already published.")
    if corrected is not None:
        _correctable(corrected, by=book)
        _correction_matches(book, corrected)
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
        raise PriceBookConflict(
            f"A published price book already starts at {book.effective_from.isoformat()} with revision "
            f"{book.revision}: to change its prices, publish a correction of its newest revision.") from exc
    usage_boundary_add(at=book.effective_from)
    spends_forget(customer_ids=None, as_of=as_of)  # every live balance may change price
    audit_record(actor=actor, action="price_book.publish", obj=book, before={"status": "draft"}, at=as_of,
                 after={"status": "published", "effective_from": book.effective_from.isoformat(),
                        "revision": book.revision, "corrects": book.corrects_id,
                        "prices": {"/".join(k): f"{v}" for k, v in sorted(prices.items())}})
    return book


@transaction.atomic
def price_book_create(*, effective_from: datetime, currency: str, prices: Iterable[dict], note: str = "",
                      actor: str, as_of: datetime, publish: bool = True, corrects: int | None = None
                      ) -> PriceBook:
    """A new version with the given prices; published at once unless `publish` is False.
    With `corrects` (a version's id), a correction of that version: same instant, next revision."""
    corrected = PriceBook.objects.get(pk=corrects) if corrects is not None else None
    book = PriceBook(effective_from=effective_from, currency=currency, note=note, corrects=corrected,
                     revision=0 if corrected is None else corrected.revision + 1)
    if corrected is not None:
        _correctable(corrected)
        _correction_matches(book, corrected)
    book.save()
    Price.objects.bulk_create(Price(price_book=book, **p) for p in prices)
    return price_book_publish(price_book_id=book.pk, actor=actor, as_of=as_of) if publish else book


@transaction.atomic
def price_book_draft_from(*, price_book_id: int, effective_from: datetime | None = None,
                          correction: bool = False) -> PriceBook:
    """Copy a version into a new draft to edit and publish: a new version from
    `effective_from`, or (`correction`) a correction of that version, from its instant."""
    source = PriceBook.objects.get(pk=price_book_id)
    if correction:
        _correctable(source)
        if effective_from not in (None, source.effective_from):
            raise PriceBookCorrectionMismatch(f"A correction starts where version {source.pk} starts.",
                                              errors={"effective_from": [source.effective_from.isoformat()]})
        draft = PriceBook.objects.create(effective_from=source.effective_from, currency=source.currency,
                                         based_on=source, corrects=source, revision=source.revision + 1,
                                         note=f"correction of version {source.pk}")
    else:
        if effective_from is None:
            raise TypeError("A new version needs its effective_from.")
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
