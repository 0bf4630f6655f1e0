"""Admin for finance staff: the ledger (events and their adjustments) and its projections
read-only; customers (with this month's spend, from billing), models and API keys editable by admins."""

from django.contrib import admin, messages
from django.utils import timezone

from config.admin_base import ReadOnlyAdmin, pretty_json
from metering.models import (
    ApiKey, CatalogModel, Customer, ModelTierChange, DeadLetter, HourlyRollup, ServiceTier, UsageAdjustment,
    UsageConflict, UsageDuplicate, UsageEvent,
)
from metering.selectors import model_tier_at
from metering.services import api_key_create


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["customer_id", "name", "currency", "email", "balance", "created_at"]
    search_fields = ["customer_id", "name", "email"]

    def get_queryset(self, request):
        from billing.selectors import month_bounds  # billing builds on metering: imported late
        from billing.selectors.budgets import customers_with_spend

        period = month_bounds(timezone.now())[0].date()
        return customers_with_spend(super().get_queryset(request), period=period)

    @admin.display(description="spend this month", ordering="period_spend")
    def balance(self, obj):
        """This month's live spend (kept in cents), "—" where none is computed yet, and the budget's limit."""
        spend = "—" if obj.period_spend is None else f"{obj.period_spend:.2f}"
        return spend if obj.budget_limit is None else f"{spend} of {obj.budget_limit:.2f}"


class ModelTierChangeInline(admin.TabularInline):
    """Tier history: a change is added, never edited, since past usage was priced by it."""

    model = ModelTierChange
    extra = 1
    fields = ["tier", "effective_from", "created_at"]
    readonly_fields = ["created_at"]
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ["name", "current_tier", "created_at"]
    search_fields = ["name"]
    inlines = [ModelTierChangeInline]

    @admin.display(description="tier now")
    def current_tier(self, obj):
        return model_tier_at(obj.name, timezone.now()) or "—"


@admin.register(ServiceTier)
class ServiceTierAdmin(admin.ModelAdmin):
    """Tiers are added, and their description edited; the name is what events and prices
    carry, so it never changes and a tier is never deleted."""

    list_display = ["name", "description", "created_at"]
    readonly_fields = ["created_at"]

    def get_readonly_fields(self, request, obj=None):
        return ["created_at"] if obj is None else ["name", "created_at"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "scope", "customer", "created_at", "revoked_at"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["prefix", "created_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        return ["name", "scope", "customer"] if obj is None else ["prefix", "name", "scope", "customer", "created_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["prefix", "scope", "customer", "created_at", "revoked_at"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw_key = api_key_create(
            scope=obj.scope, customer_id=obj.customer.customer_id if obj.customer else None, name=obj.name
        )
        obj.pk = key.pk
        messages.warning(request, f"New API key (shown once, copy it now): {raw_key}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.info(request, f"Revoked {count} key(s).")


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "customer_id", "event_id", "model", "service_tier", "input_tokens",
                    "cached_input_tokens", "output_tokens", "cluster", "received_at"]
    list_filter = ["service_tier"]
    search_fields = ["=customer_id", "=event_id"]
    date_hierarchy = "occurred_at"
    exclude = ["provider_usage"]
    readonly_fields = ["provider_usage_pretty", "adjustments"]

    @admin.display(description="provider usage (as the gateway sent it)")
    def provider_usage_pretty(self, obj):
        return pretty_json(obj.provider_usage)

    @admin.display(description="adjustments (the event as billed is this one with them applied)")
    def adjustments(self, obj):
        rows = UsageAdjustment.objects.filter(customer_id=obj.customer_id, event_id=obj.event_id).order_by("sequence")
        return "; ".join(f"{a.sequence}. {a.action} ({a.adjustment_id}, {a.recorded_at:%Y-%m-%d %H:%M}): {a.reason}"
                         for a in rows) or "—"


@admin.register(UsageAdjustment)
class UsageAdjustmentAdmin(ReadOnlyAdmin):
    """Corrections of accepted events: ledger entries, so read-only like the events."""

    list_display = ["recorded_at", "customer_id", "event_id", "action", "sequence", "adjustment_id", "reason",
                    "actor", "occurred_at", "events", "input_tokens", "output_tokens"]
    list_filter = ["action"]
    search_fields = ["=customer_id", "=event_id", "=adjustment_id"]
    date_hierarchy = "occurred_at"
    exclude = ["replacement"]
    readonly_fields = ["replacement_pretty"]

    @admin.display(description="replacement (token fields after it)")
    def replacement_pretty(self, obj):
        return pretty_json(obj.replacement)


@admin.register(HourlyRollup)
class HourlyRollupAdmin(ReadOnlyAdmin):
    list_display = ["hour", "customer_id", "model", "service_tier", "region", "cluster", "events",
                    "input_tokens", "cached_input_tokens", "output_tokens", "cache_write_tokens",
                    "cache_write_long_tokens", "audio_input_tokens", "audio_output_tokens", "reasoning_tokens"]
    list_filter = ["service_tier", "model"]
    search_fields = ["=customer_id"]
    date_hierarchy = "hour"


@admin.register(UsageDuplicate)
class UsageDuplicateAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "customer_id", "event_id", "adjustment_id", "source_partition", "source_offset"]
    search_fields = ["=customer_id", "=event_id", "=adjustment_id"]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["recorded_at", "kind", "reason", "customer_id", "event_id", "source_partition", "source_offset"]
    list_filter = ["kind", "reason"]
    search_fields = ["=customer_id", "=event_id"]
    readonly_fields = ["payload_pretty", "errors_pretty"]
    exclude = ["payload", "errors", "existing_payload"]

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(kind=DeadLetter.Kind.CONFLICT)

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.display(description="errors")
    def errors_pretty(self, obj):
        return pretty_json(obj.errors)


@admin.register(UsageConflict)
class UsageConflictAdmin(DeadLetterAdmin):
    list_display = ["recorded_at", "customer_id", "event_id", "source_partition", "source_offset"]
    list_filter = []
    readonly_fields = ["payload_pretty", "existing_payload_pretty"]

    def get_queryset(self, request):
        return DeadLetter.objects.filter(kind=DeadLetter.Kind.CONFLICT)

    @admin.display(description="accepted payload")
    def existing_payload_pretty(self, obj):
        return pretty_json(obj.existing_payload)
