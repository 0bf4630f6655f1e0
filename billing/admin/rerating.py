"""Admin for re-rating (DESIGN.md §6): the re-ratings issued, read-only, and the period
preview where finance sees every finalized invoice a correction would change, with the
total impact, before a finance manager applies it (a second, confirming step)."""

from datetime import date

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from billing.admin.common import ReadOnlyAdmin, actor_of
from billing.models import Rerating
from billing.rating import PriceMissing
from billing.rating.rerating import difference_total
from billing.services.rerating import period_rerate, period_rerate_preview
from config.api import DomainError


class PeriodForm(forms.Form):
    period = forms.RegexField(regex=r"^\d{4}-(0[1-9]|1[0-2])$", help_text="YYYY-MM",
                              error_messages={"invalid": "Give a month as YYYY-MM."})
    reason = forms.CharField(max_length=500, required=False, help_text="Printed on every document issued.")

    def month(self) -> date:
        year, month = self.cleaned_data["period"].split("-")
        return date(int(year), int(month), 1)


@admin.register(Rerating)
class ReratingAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "invoice", "customer", "difference", "document", "reason", "created_by"]
    list_select_related = ["invoice__customer", "credit_note", "debit_note"]
    search_fields = ["=invoice__number", "=invoice__customer__customer_id"]
    date_hierarchy = "created_at"
    change_list_template = "admin/billing/rerating/change_list.html"

    @admin.display(description="customer")
    def customer(self, obj):
        return obj.invoice.customer.customer_id

    @admin.display(description="document")
    def document(self, obj):
        return obj.credit_note or obj.debit_note

    def has_apply_permission(self, request) -> bool:
        return request.user.has_perm("billing.add_rerating")

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", preview, name="billing_rerating_preview"), *super().get_urls()]

    def preview_view(self, request):
        """GET: the form; GET with a period: the preview; POST apply=confirm: the confirmation
        page; POST apply=yes: the re-ratings, issued."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PeriodForm(request.POST if request.method == "POST" else request.GET or None)
        results, error = [], None
        if form.is_valid():
            applying = request.method == "POST" and request.POST.get("apply") == "yes"
            if request.method == "POST" and not self.has_apply_permission(request):
                raise PermissionDenied
            if applying:
                return self._apply(request, form)
            try:
                results = period_rerate_preview(period=form.month())
            except (DomainError, PriceMissing) as exc:
                error = str(exc)
        confirming = request.method == "POST" and request.POST.get("apply") == "confirm"
        return TemplateResponse(request, "admin/billing/rerating/preview.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "form": form, "results": results,
            "total": difference_total(d for r in results for d in r.differences), "error": error,
            "confirming": confirming and bool(results), "can_apply": self.has_apply_permission(request),
            "title": "Re-rate a finalized period",
        })

    def _apply(self, request, form: PeriodForm):
        reason = form.cleaned_data["reason"].strip()
        if not reason:
            messages.error(request, "Say why the period is re-rated: the reason is printed on every document.")
            return HttpResponseRedirect(f"{reverse('admin:billing_rerating_preview')}?period={form.cleaned_data['period']}")
        try:
            issued = period_rerate(period=form.month(), reason=reason, actor=actor_of(request), as_of=timezone.now())
        except (DomainError, PriceMissing) as exc:
            messages.error(request, f"Nothing more was issued: {exc}")
        else:
            for rerating in issued:
                note = rerating.credit_note or rerating.debit_note
                messages.success(request, f"{note} issued on {rerating.invoice} ({rerating.difference:+.2f} "
                                          f"{rerating.invoice.currency}).")
            if not issued:
                messages.info(request, "Nothing to issue: every invoice of the period already bills what it should.")
        return HttpResponseRedirect(reverse("admin:billing_rerating_changelist"))
