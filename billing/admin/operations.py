"""Billing runs, the audit log and webhooks, for finance staff.

- A billing run is started through `billing_run_create` (which records the requesting
  user and hands the run to a Celery worker once the transaction commits), never saved
  directly; its page is read-only and reloads itself while the run is under way.
  Starting one needs `billing.add_billingrun` (finance managers), and so does re-driving
  a failed one (the "Re-drive" action: its chunks not done are tried again).
- The audit log is history: nobody adds, changes or deletes an entry here, superusers
  included (a Postgres trigger refuses it anyway).
- A webhook endpoint's URL must be https:// to a public host (webhook_destinations).
- A webhook endpoint's secret is write-only: typed or generated on the add form, shown
  masked afterwards, replaced by typing a new one. Deliveries are a read-only log.
"""

import secrets
from datetime import date, datetime

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from billing.admin.common import ReadOnlyAdmin, actor_of, pretty_json
from billing.models import AuditEntry, BillingRun, WebhookDelivery, WebhookEndpoint
from billing.services.billing_runs import BillingRunNotFailed, billing_run_create, billing_run_redrive
from billing.services.webhook_destinations import WebhookUrlRefused, webhook_url_check

REFRESH_S = 2


def month_of(moment: datetime) -> date:
    return moment.date().replace(day=1)


# --- billing runs ----------------------------------------------------------------


def period_parse(text: str) -> date:
    """A billed month from YYYY-MM, or from any date in it as YYYY-MM-DD."""
    for pattern in ("%Y-%m", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip(), pattern).date().replace(day=1)
        except ValueError:
            continue
    raise ValidationError("Enter a month as YYYY-MM, or a date in it as YYYY-MM-DD.")


class BillingRunStartForm(forms.ModelForm):
    period = forms.CharField(max_length=10, widget=forms.TextInput(attrs={"placeholder": "YYYY-MM", "size": 10}),
                             help_text="The billed month (UTC): YYYY-MM, or any date in it as YYYY-MM-DD.")

    class Meta:
        model = BillingRun
        fields = ["period", "finalize"]
        help_texts = {"finalize": "Issue the drafts once refreshed: each gets its number and can no longer change. "
                                  "Unticked, the run only recomputes the drafts."}

    def clean_period(self):
        period = period_parse(self.cleaned_data["period"])
        if period > month_of(timezone.now()):
            raise ValidationError(f"{period:%Y-%m} has not begun: there is nothing to bill yet.")
        return period

    def clean(self):
        cleaned = super().clean()
        period = cleaned.get("period")
        if cleaned.get("finalize") and period is not None and period == month_of(timezone.now()):
            # The scheduled runs finalize a month only after it ends; by hand, the same guard
            # keeps a slip from issuing invoices for half a month.
            self.add_error("finalize", f"{period:%Y-%m} has not ended: finalizing now would invoice part of the "
                                       "month. Leave this unticked to refresh its drafts.")
        return cleaned


@admin.register(BillingRun)
class BillingRunAdmin(admin.ModelAdmin):
    form = BillingRunStartForm
    list_display = ["run", "period_month", "finalize", "status", "progress", "requested_by", "created_at",
                    "started_at", "finished_at", "error_short"]
    list_filter = ["status", "finalize"]
    date_hierarchy = "created_at"
    detail_fields = ["period_month", "finalize", "status", "progress", "requested_by", "created_at", "started_at",
                     "finished_at", "error", "invoices"]
    actions = ["redrive"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        return ["period", "finalize"] if obj is None else self.detail_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.detail_fields

    def get_changeform_initial_data(self, request):
        return {"period": f"{month_of(timezone.now()):%Y-%m}", **super().get_changeform_initial_data(request)}

    @admin.display(description="run", ordering="pk")
    def run(self, obj):
        return f"#{obj.pk}"

    @admin.display(description="period", ordering="period")
    def period_month(self, obj):
        return f"{obj.period:%Y-%m}"

    @admin.display(description="progress (customers)")
    def progress(self, obj):
        done, total = obj.customers_done, obj.customers_total
        if total == 0:  # not counted yet, or nothing to bill
            finished = obj.status in (BillingRun.Status.DONE, BillingRun.Status.FAILED)
            return mark_safe('<progress max="1" value="1"></progress> 0 / 0' if finished
                             else '<progress title="not counted yet"></progress> —')
        percent = done * 100 // total
        return format_html('<progress max="{}" value="{}" title="{}%"></progress> {} / {} ({}%)',
                           total, done, percent, done, total, percent)

    @admin.display(description="error")
    def error_short(self, obj):
        return Truncator(obj.error).chars(80)

    @admin.display(description="invoices of the period")
    def invoices(self, obj):
        month = f"{obj.period:%Y-%m}"
        return format_html('<a href="{}?period={}">Invoices of {}</a>', reverse("admin:billing_invoice_changelist"),
                           month, month)

    @admin.action(description="Re-drive the selected failed runs", permissions=["add"])
    def redrive(self, request, queryset):
        for run in queryset.order_by("pk"):
            try:
                billing_run_redrive(run_id=run.pk, actor=actor_of(request), as_of=timezone.now())
            except BillingRunNotFailed as exc:
                messages.warning(request, str(exc))
            else:
                messages.success(request, f"Billing run #{run.pk} re-driven: its chunks not done are sent again.")

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {"title": "Start a billing run", "show_save_and_add_another": False,
                         "show_save_and_continue": False, **(extra_context or {})}
        return super().add_view(request, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, unquote(object_id))
        if run is not None and run.status in (BillingRun.Status.PENDING, BillingRun.Status.RUNNING):
            extra_context = {"refresh_s": REFRESH_S, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        run = billing_run_create(period=obj.period, finalize=obj.finalize, actor=actor_of(request),
                                 as_of=timezone.now())
        obj.pk, obj.period, obj.requested_by, obj.created_at = run.pk, run.period, run.requested_by, run.created_at
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        finalizing = ", finalizing its drafts" if obj.finalize else ""
        messages.success(request, f"Billing run #{obj.pk} for {obj.period:%Y-%m} started{finalizing}. A worker "
                                  "picks it up; this page follows its progress.")
        return HttpResponseRedirect(reverse("admin:billing_billingrun_change", args=[obj.pk]))


# --- the audit log -------------------------------------------------------------------


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor", "action", "object_id"]
    date_hierarchy = "at"
    show_full_result_count = False  # the log only grows
    fields = ["at", "actor", "action", "object_type", "object_id", "object_link", "before_json", "after_json"]
    readonly_fields = fields

    @admin.display(description="object")
    def object_link(self, obj):
        """The audited object's admin page, where it has one."""
        try:
            model = apps.get_model(obj.object_type)
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
                          args=[quote(obj.object_id)])
        except (LookupError, ValueError, NoReverseMatch):
            return "—"
        return format_html('<a href="{}">{} {}</a>', url, model._meta.verbose_name, obj.object_id)

    @admin.display(description="before")
    def before_json(self, obj):
        return pretty_json(obj.before)

    @admin.display(description="after")
    def after_json(self, obj):
        return pretty_json(obj.after)


# --- webhooks ----------------------------------------------------------------------


def secret_masked(secret: str) -> str:
    """Enough to tell two secrets apart, not enough to sign with."""
    return "••••••••" + secret[-4:] if len(secret) >= 16 else "••••••••"


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(choices=[(event, event) for event in WebhookEndpoint.EVENTS], required=False,
                                       widget=forms.CheckboxSelectMultiple, help_text="None ticked: every event.")
    secret = forms.CharField(max_length=128, required=False)

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "events", "active", "secret"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["secret"]
        if self.instance.pk is None:
            field.required = True
            field.widget.attrs["size"] = 60
            field.help_text = ("Signs every delivery (HMAC-SHA256). A random one is filled in: copy it into the "
                               "receiver now, as it is not shown again.")
        else:
            field.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
            field.help_text = (f"Current secret: {secret_masked(self.instance.secret)}. Leave empty to keep it; "
                               "type a new one to rotate it.")

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            webhook_url_check(url)
        except WebhookUrlRefused as exc:
            raise ValidationError(str(exc)) from exc
        return url

    def clean_secret(self):
        secret = self.cleaned_data["secret"]
        if not secret and self.instance.pk is not None:
            return self.instance.secret
        if len(secret) < 16:
            raise ValidationError("Use at least 16 characters: it is what proves a delivery came from us.")
        return secret


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Added and changed by whoever holds the model permissions; never deleted, since that
    would take its delivery log with it: deactivate it instead."""

    form = WebhookEndpointForm
    list_display = ["url", "events_list", "active", "secret_display", "created_at"]
    list_filter = ["active"]
    search_fields = ["url"]

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["url", "events", "active", "secret"]
        if not self.has_change_permission(request, obj):  # read-only: never the raw secret
            return ["url", "events_list", "active", "secret_display", "created_at", "deliveries"]
        return ["url", "events", "active", "secret", "created_at", "deliveries"]

    def get_readonly_fields(self, request, obj=None):
        return ["events_list", "secret_display", "created_at", "deliveries"]

    def get_changeform_initial_data(self, request):
        return {"secret": secrets.token_urlsafe(32), **super().get_changeform_initial_data(request)}

    @admin.display(description="events")
    def events_list(self, obj):
        return ", ".join(obj.events) if obj.events else "all"

    @admin.display(description="secret")
    def secret_display(self, obj):
        return secret_masked(obj.secret)

    @admin.display(description="deliveries")
    def deliveries(self, obj):
        return format_html('<a href="{}?endpoint__id__exact={}">Delivery log</a>',
                           reverse("admin:billing_webhookdelivery_changelist"), obj.pk)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event", "endpoint", "status", "attempts", "last_status_code", "last_error_short", "created_at",
                    "delivered_at"]
    list_filter = ["status", "event", "endpoint"]
    list_select_related = ["endpoint"]
    search_fields = ["event", "endpoint__url"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ["event", "endpoint", "status", "attempts", "last_status_code", "last_error", "created_at",
              "delivered_at", "payload_json"]
    readonly_fields = fields

    @admin.display(description="last error")
    def last_error_short(self, obj):
        return Truncator(obj.last_error).chars(80)

    @admin.display(description="payload")
    def payload_json(self, obj):
        return pretty_json(obj.payload)
