"""Spend control (DESIGN.md §7): budgets and the alerts crossing them sent.

- A budget is added and changed through `budget_put`, as over the API, so the change is
  audited and this month's spend (and the thresholds it already stands past) refreshed.
  The list shows this month's spend (UTC) from the live spend rows; "—" where none is
  computed yet.
- A budget is deleted plainly (nothing derives from it), with an audit entry.
- Spend alerts are facts already announced: read-only.
- Finance managers add, change and delete budgets (billing.add_/change_/delete_budget);
  viewers only read.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing.admin.common import ReadOnlyAdmin, actor_of
from billing.models import Budget, SpendAlert
from billing.rating.money import money_text
from billing.selectors import month_bounds
from billing.selectors.budgets import budgets_with_spend
from billing.services.audit import audit_record
from billing.services.spend import budget_json, budget_put


class ThresholdsField(forms.CharField):
    """Percentages of the limit as a comma list ("50, 80, 100"): distinct, ascending, 1..1000."""

    def prepare_value(self, value):
        return ", ".join(map(str, value)) if isinstance(value, list) else value

    def to_python(self, value):
        parts = [part.strip() for part in super().to_python(value).split(",") if part.strip()]
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise ValidationError("Give whole percentages separated by commas, e.g. 50, 80, 100.")
        return [int(part) for part in parts]

    def validate(self, value):
        super().validate(value)
        if value != sorted(set(value)) or any(not 1 <= t <= 1000 for t in value):
            raise ValidationError("Thresholds are distinct and ascending, each from 1 to 1000.")


class BudgetForm(forms.ModelForm):
    thresholds = ThresholdsField(required=False, help_text="Percentages of the limit, e.g. 50, 80, 100; each is "
                                                           "announced once a month (budget.threshold_crossed).")

    class Meta:
        model = Budget
        fields = ["customer", "monthly_limit", "thresholds", "hard"]

    def clean_monthly_limit(self):
        limit = self.cleaned_data["monthly_limit"]
        if limit is not None and limit <= 0:
            raise ValidationError("The monthly limit must be above zero.")
        return limit


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    form = BudgetForm
    list_display = ["customer", "monthly_limit", "thresholds_text", "hard", "spend", "percent", "updated_at",
                    "updated_by"]
    list_filter = ["hard"]
    list_select_related = ["customer"]
    search_fields = ["customer__customer_id", "customer__name"]
    readonly_fields = ["updated_at", "updated_by"]

    def get_queryset(self, request):
        period = month_bounds(timezone.now())[0].date()
        return budgets_with_spend(super().get_queryset(request), period=period)

    def get_fields(self, request, obj=None):
        fields = ["customer", "monthly_limit", "thresholds", "hard"]
        return fields if obj is None else [*fields, "updated_at", "updated_by"]

    def get_readonly_fields(self, request, obj=None):
        # A budget belongs to its customer: another customer's is another budget.
        return self.readonly_fields if obj is None else [*self.readonly_fields, "customer"]

    @admin.display(description="thresholds (%)")
    def thresholds_text(self, obj):
        return ", ".join(map(str, obj.thresholds)) or "—"

    @admin.display(description="spend this month", ordering="period_spend")
    def spend(self, obj):
        return "—" if obj.period_spend is None else money_text(obj.period_spend)

    @admin.display(description="% of limit", ordering="percent_of_limit")
    def percent(self, obj):
        return "—" if obj.percent_of_limit is None else f"{money_text(obj.percent_of_limit)}%"

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return  # nothing to audit or refresh
        saved = budget_put(customer_id=obj.customer.customer_id, monthly_limit=obj.monthly_limit,
                           thresholds=obj.thresholds, hard=obj.hard, actor=actor_of(request), as_of=timezone.now())
        obj.pk, obj.updated_at, obj.updated_by = saved.pk, saved.updated_at, saved.updated_by
        obj._state.adding = False

    def delete_model(self, request, obj):
        audit_record(actor=actor_of(request), action="budget.delete", obj=obj, before=budget_json(obj), after=None,
                     at=timezone.now())
        super().delete_model(request, obj)

    @transaction.atomic
    def delete_queryset(self, request, queryset):
        for budget in queryset:
            self.delete_model(request, budget)


@admin.register(SpendAlert)
class SpendAlertAdmin(ReadOnlyAdmin):
    list_display = ["kind", "customer", "key", "period", "threshold", "spend", "limit", "created_at"]
    list_filter = ["kind", ("period", admin.AllValuesFieldListFilter)]
    list_select_related = ["customer"]
    search_fields = ["=customer__customer_id", "=key"]
