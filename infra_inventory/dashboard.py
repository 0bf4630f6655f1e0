"""The finance dashboard: an admin page whose four charts and margin-alert list are drawn in
the browser (static/infra_inventory/dashboard.js, plain SVG) from the unit-economics API,
with the customers nearest their budget this month from billing's budgets API, read with
the staff session (config.api.StaffSessionAuthentication).

The page itself computes no figure: every number shown is a decimal string the API sent,
so the dashboard and the API always agree. Wired into config/urls.py before the admin's
own catch-all: `path("admin/finance-dashboard/", include("infra_inventory.dashboard"))`.

Who may open it: active staff (the admin site's own check, which redirects anyone else to
the admin login) holding `DASHBOARD_PERMISSION`, which the finance groups
(billing/permissions.py) and superusers have.
"""

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone

DASHBOARD_PERMISSION = "infra_inventory.view_costallocation"
UNIT_ECONOMICS_PATH = "/api/v1/unit-economics"
MARGIN_ALERTS_PATH = "/api/v1/margin-alerts"
BUDGETS_NEAREST_LIMIT_PATH = "/api/v1/budgets/nearest-limit"


def last_full_month(today: date) -> tuple[date, date]:
    """[first day of the previous month, first day of this month)."""
    this_month = today.replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1), this_month


class PeriodForm(forms.Form):
    """A half-open period of whole UTC days, as the API reads it."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="First day, included.")
    end = forms.DateField(label="Until", widget=forms.DateInput(attrs={"type": "date"}),
                          help_text="Day after the last one: the period ends at 00:00 UTC of this day.")

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and end <= start:
            raise forms.ValidationError("The period must end after it starts.")
        return cleaned


def _instant(day: date) -> str:
    """00:00 UTC of `day` in RFC 3339, as the API's start/end want it."""
    return datetime.combine(day, time(0), tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _api_url(name: str, fallback: str) -> str:
    """The API's own route when it is named, else its documented path (API.md)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return fallback


def finance_dashboard(request: HttpRequest) -> TemplateResponse:
    if not request.user.has_perm(DASHBOARD_PERMISSION):
        raise PermissionDenied
    default_start, default_end = last_full_month(timezone.now().date())
    given = {key: request.GET[key] for key in ("start", "end") if request.GET.get(key)}
    form = PeriodForm({"start": default_start, "end": default_end, **given})
    period = None
    if form.is_valid():
        period = {"start": _instant(form.cleaned_data["start"]), "end": _instant(form.cleaned_data["end"]),
                  "start_date": form.cleaned_data["start"],
                  "last_date": form.cleaned_data["end"] - timedelta(days=1)}
    context = {
        **admin.site.each_context(request),
        "title": "Finance dashboard",
        "form": form,
        "period": period,
        "unit_economics_url": _api_url("unit-economics", UNIT_ECONOMICS_PATH),
        "margin_alerts_url": _api_url("margin-alerts", MARGIN_ALERTS_PATH),
        "budgets_url": _api_url("budgets-nearest-limit", BUDGETS_NEAREST_LIMIT_PATH),
    }
    return TemplateResponse(request, "infra_inventory/dashboard.html", context)


def dashboard_urls() -> list:
    """The dashboard's routes, behind the admin site's staff check (and never cached)."""
    return [path("", admin.site.admin_view(finance_dashboard), name="finance-dashboard")]


urlpatterns = dashboard_urls()
