"""Invoices, credit notes and debit notes for finance staff.

- Nothing here edits an invoice or a note: their pages are read-only, as Postgres
  keeps them once issued. Debit notes are only listed and downloaded here: a re-rating
  issues them (billing.services.rerating), never a form. The lifecycle runs through
  actions calling the services — finalize, mark paid, void (each behind a confirmation page, as none can be undone) and
  a credit note (an intermediate form, for one invoice).
- The actions need `billing.change_invoice`, the credit note `billing.add_creditnote`:
  the finance managers' permissions (billing/permissions.py). Custom permissions would
  have to be declared on the models, which this module does not own.
- A service's `DomainError` (a 409 state conflict, a credit note too large) becomes an
  admin error message, and so does `PriceMissing` (usage no published price covers),
  which the rating core raises as a plain exception. Each selected invoice goes through
  its own service call and transaction, so one refused invoice doesn't hold back the others.
- The PDF and CSV are `billing.documents`, the same documents the API serves with keys.
  A note issued by a re-rating shows the re-rating's lines on its page and in its PDF.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header

from billing.admin.common import ReadOnlyAdmin, ReadOnlyPermissions, actor_of
from billing.documents import credit_note_pdf, debit_note_pdf, note_rerating, rerating_line_text, usage_dates_text
from billing.models import CreditNote, DebitNote, Invoice, InvoiceLine
from billing.rating import PriceMissing
from billing.services.invoices import (
    credit_note_issue, invoice_credit_room, invoice_finalize, invoice_mark_paid, invoice_void,
)
from config.api import DomainError

MANAGE_PERMISSION = "billing.change_invoice"
CREDIT_PERMISSION = "billing.add_creditnote"


def month_label(period: date) -> str:
    return f"{period:%Y-%m}"


def money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def refusal(invoice: Invoice, exc: DomainError | PriceMissing) -> str:
    return f"{invoice}: {exc.detail if isinstance(exc, DomainError) else exc}"


def document_name(invoice: Invoice) -> str:
    """The number once issued; a draft has none yet."""
    return invoice.number or f"draft-{invoice.customer.customer_id}-{month_label(invoice.period)}"


def document_response(content: bytes | str, *, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    return response


def viewable(model_admin: admin.ModelAdmin, request, object_id: str):
    """The object behind an admin document view, if this user may see it."""
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        raise Http404(f"No {model_admin.opts.verbose_name} {object_id}.")
    if not model_admin.has_view_permission(request, obj):
        raise PermissionDenied
    return obj


def credited_total(invoice: Invoice) -> Decimal:
    return invoice.credit_notes.aggregate(total=Sum("amount"))["total"] or Decimal(0)


def debited_total(invoice: Invoice) -> Decimal:
    return invoice.debit_notes.aggregate(total=Sum("amount"))["total"] or Decimal(0)


@dataclass(frozen=True)
class Transition:
    """A lifecycle action: the service it calls and what the confirmation page says."""

    service: Callable[..., Invoice]
    verb: str
    done: str
    from_status: str
    warning: str


TRANSITIONS = {
    "finalize": Transition(
        service=invoice_finalize, verb="Finalize", done="finalized", from_status=Invoice.Status.DRAFT,
        warning="Each draft is rated as its usage stands now, draws down prepaid credit and gets the next invoice "
                "number. A finalized invoice never changes; only a credit note can correct it."),
    "mark_paid": Transition(
        service=invoice_mark_paid, verb="Mark paid", done="marked paid", from_status=Invoice.Status.FINALIZED,
        warning="A paid invoice stays paid; only a credit note can change what it asked for."),
    "void": Transition(
        service=invoice_void, verb="Void", done="voided", from_status=Invoice.Status.FINALIZED,
        warning="A void invoice stays void and keeps its number; the next billing run may draft a new invoice for "
                "the period."),
}


class PeriodFilter(admin.SimpleListFilter):
    """Billing periods are months: filter by one, most recent first."""

    title = "period"
    parameter_name = "period"

    def lookups(self, request, model_admin):
        periods = Invoice.objects.order_by("-period").values_list("period", flat=True).distinct()[:36]
        return [(month_label(p), month_label(p)) for p in periods]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            year, month = (int(part) for part in self.value().split("-"))
            return queryset.filter(period=date(year, month, 1))
        except ValueError as exc:
            raise IncorrectLookupParameters(exc) from exc


class InvoiceLineInline(ReadOnlyPermissions, admin.TabularInline):
    model = InvoiceLine
    fields = ["position", "kind", "description", "model", "service_tier", "token_class", "tokens", "unit_price",
              "amount", "usage_dates"]
    readonly_fields = fields
    ordering = ["position"]
    extra = 0
    can_delete = False

    @admin.display(description="Usage period")
    def usage_dates(self, line: InvoiceLine) -> str:
        return usage_dates_text(line)


def note_pdf_link(note: CreditNote | DebitNote) -> str:
    return format_html('<a href="{}">PDF</a>', reverse(f"admin:billing_{note._meta.model_name}_pdf", args=[note.pk]))


RERATING_COLUMNS = ("Line", "Tokens billed", "Tokens now", "Billed", "Now", "Difference")
RERATING_FIELDS = ("billed_tokens", "tokens", "billed_amount", "amount", "difference")


def rerating_table(note: CreditNote | DebitNote) -> str:
    """The stored lines of the re-rating that issued the note, as its PDF lists them."""
    rerating = note_rerating(note)
    if rerating is None:
        return "— (issued by hand)"
    header = format_html_join("", "<th>{}</th>", [(label,) for label in RERATING_COLUMNS])
    cells = [(rerating_line_text(line), *(_stored(line, name) for name in RERATING_FIELDS)) for line in rerating.lines]
    rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", cells)
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table><p>Difference {} {}: {}</p>",
                       header, rows, rerating.difference, note.invoice.currency, rerating.reason)


def _stored(line: dict, name: str):
    value = line.get(name)
    return "" if value is None else value


class CreditNoteInline(InvoiceLineInline):
    model = CreditNote
    fields = ["number", "amount", "reason", "created_by", "created_at", "document"]
    readonly_fields = fields
    ordering = ["created_at"]

    @admin.display(description="document")
    def document(self, obj):
        return note_pdf_link(obj)


class DebitNoteInline(CreditNoteInline):
    model = DebitNote


class CreditNoteForm(forms.Form):
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Shown to the customer on the credit note.")


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["label", "customer", "period_month", "status", "total_display", "issued_at", "due_at"]
    list_filter = [PeriodFilter, "status", ("customer", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["customer"]
    search_fields = ["number", "customer__customer_id", "customer__name"]
    fields = ["number", "customer", "period_month", "status", "currency", "subtotal", "total", "credited", "debited",
              "amount_remaining", "computed_at", "issued_at", "due_at", "paid_at", "voided_at", "documents",
              "audit_trail"]
    readonly_fields = fields
    inlines = [InvoiceLineInline, CreditNoteInline, DebitNoteInline]
    actions = ["finalize", "mark_paid", "void", "issue_credit_note"]

    def has_manage_permission(self, request):
        return request.user.has_perm(MANAGE_PERMISSION)

    def has_credit_permission(self, request):
        return request.user.has_perm(CREDIT_PERMISSION)

    # --- columns and fields ------------------------------------------------------

    @admin.display(description="number", ordering="number")
    def label(self, obj):
        return obj.number or "draft"

    @admin.display(description="period", ordering="period")
    def period_month(self, obj):
        return month_label(obj.period)

    @admin.display(description="total", ordering="total")
    def total_display(self, obj):
        return money(obj.total, obj.currency)

    @admin.display(description="credited by credit notes")
    def credited(self, obj):
        return money(credited_total(obj), obj.currency)

    @admin.display(description="debited by debit notes")
    def debited(self, obj):
        return money(debited_total(obj), obj.currency)

    @admin.display(description="amount remaining")
    def amount_remaining(self, obj):
        """The total less the credit notes plus the debit notes, as the PDF states it."""
        return money(obj.total - credited_total(obj) + debited_total(obj), obj.currency)

    @admin.display(description="documents")
    def documents(self, obj):
        return format_html('<a href="{}">PDF</a> · <a href="{}">CSV</a>',
                           reverse("admin:billing_invoice_pdf", args=[obj.pk]),
                           reverse("admin:billing_invoice_csv", args=[obj.pk]))

    @admin.display(description="audit log")
    def audit_trail(self, obj):
        url = reverse("admin:billing_auditentry_changelist")
        return format_html('<a href="{}?object_type__exact={}&amp;object_id={}">Who did what to this invoice</a>',
                           url, Invoice._meta.label, obj.pk)

    # --- the changelist's total and the change page's buttons -------------------------

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if cl is not None:
            response.context_data["totals"] = self.totals(cl.queryset)
        return response

    def totals(self, queryset) -> list[dict]:
        """Σ total of the filtered invoices, per currency, noting the void ones among them."""
        rows = (queryset.order_by().values("currency")
                .annotate(count=Count("pk"), total=Sum("total"), void=Count("pk", filter=Q(status=Invoice.Status.VOID)))
                .order_by("currency"))
        return [{"count": row["count"], "void": row["void"], "total": money(row["total"], row["currency"])}
                for row in rows]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, unquote(object_id))
        if invoice is not None:
            extra_context = {**(extra_context or {}), "object_actions": self.actions_for(request, invoice)}
        return super().change_view(request, object_id, form_url, extra_context)

    def actions_for(self, request, invoice: Invoice) -> list[tuple[str, str]]:
        """The buttons the invoice's page offers this user: (action, label)."""
        offered = []
        if self.has_manage_permission(request):
            offered += [(name, t.verb) for name, t in TRANSITIONS.items() if invoice.status == t.from_status]
        if self.has_credit_permission(request) and invoice.status in (Invoice.Status.FINALIZED, Invoice.Status.PAID):
            offered.append(("issue_credit_note", "Issue a credit note"))
        return offered

    # --- actions -------------------------------------------------------------------

    @admin.action(description="Finalize the selected drafts", permissions=["manage"])
    def finalize(self, request, queryset):
        return self.transition(request, queryset, "finalize")

    @admin.action(description="Mark the selected invoices paid", permissions=["manage"])
    def mark_paid(self, request, queryset):
        return self.transition(request, queryset, "mark_paid")

    @admin.action(description="Void the selected invoices", permissions=["manage"])
    def void(self, request, queryset):
        return self.transition(request, queryset, "void")

    def transition(self, request, queryset, name: str):
        transition = TRANSITIONS[name]
        invoices = list(queryset.select_related("customer").order_by("pk"))
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(request, "admin/billing/invoice/transition_confirmation.html", {
                **self.admin_site.each_context(request), "opts": self.opts,
                "title": f"{transition.verb}: are you sure?", "invoices": invoices, "action": name,
                "transition": transition, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            })
        as_of = timezone.now()
        for invoice in invoices:
            try:
                done = transition.service(invoice_id=invoice.pk, actor=actor_of(request), as_of=as_of)
            except (DomainError, PriceMissing) as exc:
                messages.error(request, refusal(invoice, exc))
            else:
                messages.success(request, f"{done} {transition.done} ({done.customer.customer_id}, "
                                          f"{month_label(done.period)}, {money(done.total, done.currency)}).")
        return self.back_to(invoices)

    @admin.action(description="Issue a credit note (one invoice)", permissions=["credit"])
    def issue_credit_note(self, request, queryset):
        invoices = list(queryset.select_related("customer")[:2])
        if len(invoices) != 1:
            messages.error(request, "Select exactly one invoice to issue a credit note on.")
            return None
        invoice = invoices[0]
        if invoice.status not in (Invoice.Status.FINALIZED, Invoice.Status.PAID):
            messages.error(request, f"{invoice} is {invoice.status}: only a finalized or paid invoice can be credited.")
            return self.back_to(invoices)
        form = CreditNoteForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                note = credit_note_issue(invoice_id=invoice.pk, amount=form.cleaned_data["amount"],
                                         reason=form.cleaned_data["reason"], actor=actor_of(request),
                                         as_of=timezone.now())
            except DomainError as exc:
                messages.error(request, refusal(invoice, exc))
                for field, errors in (exc.errors or {}).items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                messages.success(request, f"Credit note {note.number} of {money(note.amount, invoice.currency)} "
                                          f"issued on {invoice}.")
                return self.back_to(invoices)
        return TemplateResponse(request, "admin/billing/invoice/credit_note_form.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "title": f"Credit note on {invoice}",
            "invoice": invoice, "form": form, "credited": money(credited_total(invoice), invoice.currency),
            "debited": money(debited_total(invoice), invoice.currency),
            "remaining": money(invoice_credit_room(invoice), invoice.currency),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })

    def back_to(self, invoices: list[Invoice]):
        """One invoice: back to its page, to see what changed. Several: the list (None)."""
        if len(invoices) == 1:
            return HttpResponseRedirect(reverse("admin:billing_invoice_change", args=[invoices[0].pk]))
        return None

    # --- documents -----------------------------------------------------------------

    def get_urls(self):
        # Before the defaults: their "<path:object_id>/" would swallow these.
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/pdf/", view(self.pdf_view), name="billing_invoice_pdf"),
            path("<path:object_id>/csv/", view(self.csv_view), name="billing_invoice_csv"),
            *super().get_urls(),
        ]

    def pdf_view(self, request, object_id):
        from billing.documents import invoice_pdf  # imported here so the admin loads without it

        invoice = viewable(self, request, object_id)
        return document_response(invoice_pdf(invoice), filename=f"{document_name(invoice)}.pdf",
                                 content_type="application/pdf")

    def csv_view(self, request, object_id):
        from billing.documents import invoice_csv

        invoice = viewable(self, request, object_id)
        return document_response(invoice_csv(invoice), filename=f"{document_name(invoice)}.csv",
                                 content_type="text/csv; charset=utf-8")


class NoteAdmin(ReadOnlyAdmin):
    """Issued from an invoice's page or by a re-rating; listed here for finding them by number."""

    list_display = ["number", "invoice", "amount", "reason", "created_by", "created_at"]
    list_select_related = ["invoice__customer"]
    search_fields = ["number", "invoice__number", "invoice__customer__customer_id", "reason"]
    date_hierarchy = "created_at"
    fields = ["number", "invoice", "amount", "reason", "created_by", "created_at", "document", "rerating_lines"]
    readonly_fields = fields
    document_pdf: Callable[[CreditNote | DebitNote], bytes]  # staticmethod: the note's billing.documents PDF

    @admin.display(description="document")
    def document(self, obj):
        return note_pdf_link(obj)

    @admin.display(description="re-rating")
    def rerating_lines(self, obj):
        return rerating_table(obj)

    def get_urls(self):
        name = f"billing_{self.opts.model_name}_pdf"
        return [path("<path:object_id>/pdf/", self.admin_site.admin_view(self.pdf_view), name=name),
                *super().get_urls()]

    def pdf_view(self, request, object_id):
        note = viewable(self, request, object_id)
        return document_response(self.document_pdf(note), filename=f"{note.number}.pdf",
                                 content_type="application/pdf")


@admin.register(CreditNote)
class CreditNoteAdmin(NoteAdmin):
    document_pdf = staticmethod(credit_note_pdf)


@admin.register(DebitNote)
class DebitNoteAdmin(NoteAdmin):
    document_pdf = staticmethod(debit_note_pdf)
