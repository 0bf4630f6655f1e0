from django.urls import path, register_converter
from django.urls.converters import StringConverter

from metering import adjustment_apis, apis


class NameConverter(StringConverter):
    """A model name: any characters but `/` and control characters (which Postgres text,
    NUL above all, could not match anyway)."""

    regex = r"[^/\x00-\x1f\x7f]+"


register_converter(NameConverter, "name")

urlpatterns = [
    path("usage-events", apis.UsageEventIngestApi.as_view(), name="usage-events"),
    path("usage-adjustments", adjustment_apis.UsageAdjustmentApi.as_view(), name="usage-adjustments"),
    path("dead-letters", apis.DeadLetterListApi.as_view(), name="dead-letters"),
    path("customers", apis.CustomerListApi.as_view(), name="customers"),
    path("customers/<slug:customer_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path("models", apis.CatalogModelListApi.as_view(), name="models"),
    path("service-tiers", apis.ServiceTierListApi.as_view(), name="service-tiers"),
    path("models/<name:name>/tier-changes", apis.ModelTierChangeApi.as_view(), name="model-tier-changes"),
]
