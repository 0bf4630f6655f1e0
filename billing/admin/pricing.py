"""Price book versions, contracts and the credit ledger.

- A published price book is read-only here, as in Postgres (the triggers are the real
  guard); a new version is a draft copied from one, edited, then published by an action
  that calls `price_book_publish` and needs `billing.publish_pricebook`.
- A correction is drafted from a published version's newest revision (same instant, next
  revision; drafting and publishing it both need `publish_pricebook`), and published the same
  way; the version it corrects stays, marked superseded.
- Each book's page shows its price changes against the version it supersedes: the one it
  corrects, else the newest revision of the published instant before it.
- A contract version is added through `contract_put`, as over the API, so an open-ended
  earlier version is closed where the new one starts.
- The credit ledger is append-only: grants are added through `credit_grant`, never
  changed or deleted.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing.admin.common import actor_of
from billing.models import Contract, ContractPrice, ContractVolumeBand, CreditEntry, Price, PriceBook
from billing.services.contracts import contract_put
from billing.services.credits import credit_grant
from billing.services.price_books import price_book_changes, price_book_draft_from, price_book_publish
from config.api import DomainError, is_on_the_hour
from metering.models import ServiceTier


def on_the_hour(value: datetime | None) -> datetime | None:
    if value is not None and not is_on_the_hour(value):
        raise ValidationError("Must be on an hour boundary: usage is priced per hour.")
    return value


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# --- price books -----------------------------------------------------------------


def draft_start(*, source: PriceBook, as_of: datetime) -> datetime:
    """Where a copied draft starts until someone edits it: a day after its source, but never
    before the next hour, since a new version normally prices usage still to come."""
    return max(hour_floor(source.effective_from) + timedelta(days=1), hour_floor(as_of) + timedelta(hours=1))


def previous_published(book: PriceBook) -> PriceBook | None:
    """The version this one supersedes: the one it corrects, else the newest revision of the
    published instant before it (older revisions there are superseded already)."""
    if book.corrects_id is not None:
        return book.corrects
    return (PriceBook.objects.filter(status=PriceBook.Status.PUBLISHED, effective_from__lt=book.effective_from)
            .exclude(pk=book.pk).order_by("-effective_from", "-revision").first())


def changes_table(*, old: PriceBook | None, new: PriceBook) -> str:
    changes = price_book_changes(old=old, new=new)
    if old is not None and new.corrects_id == old.pk:
        against = (f"Against version {old.pk} (revision {old.revision}), which it corrects from "
                   f"{old.effective_from:%Y-%m-%d %H:%M} UTC")
    elif old is not None:
        against = f"Against version {old.pk}, in force from {old.effective_from:%Y-%m-%d %H:%M} UTC"
    else:
        against = "No published version starts earlier"
    if not changes:
        return format_html("<p>{}: no price changes.</p>", against)
    rows = format_html_join(
        "", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((key, "—" if before is None else before, "—" if after is None else after) for key, before, after in changes),
    )
    return format_html(
        '<p>{}; {} per 1M tokens, — where a key is not priced:</p><table class="price-changes">'
        "<thead><tr><th>key</th><th>old price</th><th>new price</th></tr></thead><tbody>{}</tbody></table>",
        against, new.currency, rows,
    )


def published_text(book: PriceBook) -> str:
    if book.corrects_id is None:
        return f"Published {book}."
    return (f"Published version {book.pk}, revision {book.revision}: it supersedes version {book.corrects_id} "
            f"from {book.effective_from:%Y-%m-%d %H:%M} UTC.")


class PriceBookForm(forms.ModelForm):
    class Meta:
        model = PriceBook
        fields = ["effective_from", "currency", "note"]

    def clean_effective_from(self):
        return on_the_hour(self.cleaned_data["effective_from"])


def service_tier_choices() -> list[tuple[str, str]]:
    """The catalog's service tiers, read each time a form is built: finance can add tiers."""
    return [(name, name) for name in ServiceTier.objects.order_by("name").values_list("name", flat=True)]


class PriceKeyForm(forms.ModelForm):
    """A price, override or band row: its service tier one of the catalog's (the column is
    free text since tiers became catalog rows; the API checks the same with ServiceTierField)."""

    service_tier = forms.ChoiceField(choices=service_tier_choices)


class PriceInline(admin.TabularInline):
    """Editable while the book is a draft; read-only once it is published."""

    model = Price
    form = PriceKeyForm
    fields = ["model_tier", "service_tier", "token_class", "unit_price"]
    ordering = ["model_tier", "service_tier", "token_class"]
    extra = 0

    def _draft(self, book: PriceBook | None) -> bool:
        return book is None or book.status == PriceBook.Status.DRAFT

    def has_add_permission(self, request, obj=None):
        return self._draft(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._draft(obj) and super().has_delete_permission(request, obj)


@admin.register(PriceBook)
class PriceBookAdmin(admin.ModelAdmin):
    form = PriceBookForm
    list_display = ["effective_from", "revision", "status", "superseded", "currency", "price_count", "published_at",
                    "published_by", "note", "based_on"]
    list_display_links = ["effective_from"]
    list_filter = ["status"]
    date_hierarchy = "effective_from"
    inlines = [PriceInline]
    actions = ["copy_into_draft", "draft_correction", "publish"]
    readonly_fields = ["status", "revision", "corrects", "superseded", "based_on", "created_at", "published_at",
                       "published_by", "changes"]

    def get_queryset(self, request):
        corrections = PriceBook.objects.filter(status=PriceBook.Status.PUBLISHED, corrects=OuterRef("pk"))
        return (super().get_queryset(request).select_related("based_on", "corrects")
                .annotate(price_count=Count("prices"), superseded_by_id=Subquery(corrections.values("pk")[:1])))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["effective_from", "currency", "note"]
        return ["effective_from", "currency", "note", "status", "revision", "corrects", "superseded", "based_on",
                "created_at", "published_at", "published_by", "changes"]

    def get_readonly_fields(self, request, obj=None):
        # A correction's instant and currency are those of the version it corrects.
        if obj is not None and obj.corrects_id is not None:
            return [*self.readonly_fields, "effective_from", "currency"]
        return self.readonly_fields

    def get_actions(self, request):
        # Bulk delete would reach published books; a draft is deleted from its own page.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status == PriceBook.Status.PUBLISHED:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status == PriceBook.Status.PUBLISHED:
            return False
        return super().has_delete_permission(request, obj)

    def has_publish_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.publish_pricebook")

    def has_correct_permission(self, request):
        """Drafting a correction adds a version that only a publisher may make count."""
        return self.has_add_permission(request) and self.has_publish_permission(request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        book = self.get_object(request, object_id)
        if book is not None:
            extra_context = {**(extra_context or {}), "object_actions": self.actions_for(request, book)}
        return super().change_view(request, object_id, form_url, extra_context)

    def actions_for(self, request, book: PriceBook) -> list[tuple[str, str]]:
        """The buttons on a book's page: publish a draft, correct the newest published revision."""
        if book.status == PriceBook.Status.DRAFT:
            return [("publish", "Publish")] if self.has_publish_permission(request) else []
        if book.superseded_by_id is None and self.has_correct_permission(request):
            return [("draft_correction", "Draft a correction")]
        return []

    @admin.display(description="prices", ordering="price_count")
    def price_count(self, obj):
        return obj.price_count

    @admin.display(description="superseded by")
    def superseded(self, obj):
        if obj.superseded_by_id is None:
            return "—"
        link = reverse("admin:billing_pricebook_change", args=[obj.superseded_by_id])
        return format_html('<a href="{}">version {}</a>', link, obj.superseded_by_id)

    @admin.display(description="changes against the version it supersedes")
    def changes(self, obj):
        return changes_table(old=previous_published(obj), new=obj)

    @admin.action(description="Copy into a new draft", permissions=["add"])
    def copy_into_draft(self, request, queryset):
        as_of = timezone.now()
        drafts = [price_book_draft_from(price_book_id=source.pk, effective_from=draft_start(source=source, as_of=as_of))
                  for source in queryset.order_by("effective_from", "pk")]
        for draft in drafts:
            messages.success(request, f"Draft {draft.pk} made from version {draft.based_on_id}, starting "
                                      f"{draft.effective_from:%Y-%m-%d %H:%M} UTC: edit it, then publish it.")
        if len(drafts) == 1:
            return HttpResponseRedirect(reverse("admin:billing_pricebook_change", args=[drafts[0].pk]))
        return None

    @admin.action(description="Draft a correction", permissions=["correct"])
    def draft_correction(self, request, queryset):
        drafts = []
        for source in queryset.order_by("effective_from", "revision", "pk"):
            try:
                drafts.append(price_book_draft_from(price_book_id=source.pk, correction=True))
            except DomainError as exc:
                messages.error(request, f"No correction of version {source.pk} drafted: {exc.detail}")
        for draft in drafts:
            messages.success(request, f"Draft {draft.pk} corrects version {draft.corrects_id} from "
                                      f"{draft.effective_from:%Y-%m-%d %H:%M} UTC (revision {draft.revision}): "
                                      f"edit its prices, then publish it.")
        if len(drafts) == 1:
            return HttpResponseRedirect(reverse("admin:billing_pricebook_change", args=[drafts[0].pk]))
        return None

    @admin.action(description="Publish", permissions=["publish"])
    def publish(self, request, queryset):
        as_of = timezone.now()
        for book in queryset.order_by("effective_from", "pk"):
            try:
                published = price_book_publish(price_book_id=book.pk, actor=actor_of(request), as_of=as_of)
            except DomainError as exc:
                messages.error(request, f"Version {book.pk} not published: {exc.detail}")
            else:
                messages.success(request, published_text(published))


# --- contracts -------------------------------------------------------------------


class ContractForm(forms.ModelForm):
    class Meta:
        model = Contract
        fields = ["customer", "effective_from", "effective_to", "discount_percent", "monthly_minimum"]

    def clean_effective_from(self):
        return on_the_hour(self.cleaned_data["effective_from"])

    def clean_effective_to(self):
        return on_the_hour(self.cleaned_data["effective_to"])

    def clean(self):
        cleaned = super().clean()
        adding = self.instance._state.adding
        customer = cleaned.get("customer") if adding else self.instance.customer
        if customer is not None and cleaned.get("effective_from"):
            self._check_overlap(customer=customer, start=cleaned["effective_from"], end=cleaned.get("effective_to"))
        return cleaned

    def _check_overlap(self, *, customer, start: datetime, end: datetime | None) -> None:
        """Versions never overlap. A new one goes through contract_put, which closes an
        open-ended version that began earlier; an edited one must fit between the others."""
        others = Contract.objects.filter(customer=customer)
        if self.instance._state.adding:
            clash = others.filter(Q(effective_to__gt=start) | Q(effective_to__isnull=True, effective_from__gte=start))
        else:
            clash = others.exclude(pk=self.instance.pk).filter(Q(effective_to__gt=start) | Q(effective_to__isnull=True))
        if end is not None:
            clash = clash.filter(effective_from__lt=end)
        if first := clash.order_by("effective_from").first():
            until = f"until {first.effective_to:%Y-%m-%d %H:%M} UTC" if first.effective_to else "open-ended"
            self.add_error("effective_from", f"Overlaps the version from {first.effective_from:%Y-%m-%d %H:%M} UTC "
                                             f"({until}).")

    def validate_constraints(self):
        # The overlap (exclusion) constraint is the one naming `customer`: checked in clean()
        # with a readable message, and by Postgres on save. The check constraints don't name it.
        try:
            self.instance.validate_constraints(exclude=self._get_validation_exclusions() | {"customer"})
        except ValidationError as exc:
            self._update_errors(exc)


class ContractPriceInline(admin.TabularInline):
    model = ContractPrice
    form = PriceKeyForm
    fields = ["model_tier", "service_tier", "token_class", "unit_price"]
    ordering = ["model_tier", "service_tier", "token_class"]
    extra = 0


class VolumeBandFormSet(forms.BaseInlineFormSet):
    """Each price key's bands end with exactly one open-ended band, as the rating engine needs."""

    def clean(self):
        super().clean()
        open_ended = defaultdict(int)
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or not data.get("model_tier"):
                continue
            key = (data["model_tier"], data.get("service_tier"), data.get("token_class"))
            open_ended[key] += data.get("tokens_up_to") is None
        wrong = sorted("/".join(map(str, key)) for key, count in open_ended.items() if count != 1)
        if wrong:
            raise ValidationError(f"Bands must end with exactly one open-ended band (tokens up to empty): "
                                  f"{', '.join(wrong)}.")


class ContractVolumeBandInline(admin.TabularInline):
    model = ContractVolumeBand
    form = PriceKeyForm
    formset = VolumeBandFormSet
    fields = ["model_tier", "service_tier", "token_class", "tokens_up_to", "unit_price"]
    extra = 0


@admin.register(Contract)
class ContractAdmin(admin.ModelAdmin):
    form = ContractForm
    list_display = ["customer", "effective_from", "effective_to", "discount_percent", "monthly_minimum",
                    "created_by", "created_at"]
    list_filter = ["customer"]
    list_select_related = ["customer"]
    search_fields = ["customer__customer_id", "customer__name"]
    date_hierarchy = "effective_from"
    inlines = [ContractPriceInline, ContractVolumeBandInline]
    readonly_fields = ["created_by", "created_at"]

    def get_fields(self, request, obj=None):
        fields = ["customer", "effective_from", "effective_to", "discount_percent", "monthly_minimum"]
        return fields if obj is None else [*fields, "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        # A version belongs to its customer: a different customer is a new version.
        return self.readonly_fields if obj is None else [*self.readonly_fields, "customer"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        contract = contract_put(
            customer_id=obj.customer.customer_id, effective_from=obj.effective_from, effective_to=obj.effective_to,
            discount_percent=obj.discount_percent, monthly_minimum=obj.monthly_minimum, unit_price_overrides=[],
            volume_tiers=[], actor=actor_of(request),
        )
        # The inlines are saved next, against this row.
        obj.pk, obj.created_at, obj.created_by = contract.pk, contract.created_at, contract.created_by
        obj._state.adding = False


# --- credits ---------------------------------------------------------------------


class CreditGrantForm(forms.ModelForm):
    class Meta:
        model = CreditEntry
        fields = ["customer", "amount", "reason"]

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount is not None and amount <= 0:
            raise ValidationError("A grant adds credit: the amount must be positive.")
        return amount


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    """Append-only, as the trigger enforces: grants are added, nothing is changed or deleted."""

    form = CreditGrantForm
    list_display = ["customer", "amount", "reason", "created_by", "created_at"]
    list_filter = ["customer"]
    list_select_related = ["customer"]
    search_fields = ["customer__customer_id", "reason"]
    date_hierarchy = "created_at"

    def get_fields(self, request, obj=None):
        fields = ["customer", "amount", "reason"]
        return fields if obj is None else [*fields, "created_by", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        entry = credit_grant(customer_id=obj.customer.customer_id, amount=obj.amount, reason=obj.reason,
                             actor=actor_of(request), as_of=timezone.now())
        obj.pk, obj.created_at, obj.created_by = entry.pk, entry.created_at, entry.created_by
        obj._state.adding = False
