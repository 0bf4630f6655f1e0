from django.urls import path

from metering import apis

urlpatterns = [
    path("usage-events", apis.UsageEventIngestApi.as_view(), name="usage-events"),
    path("dead-letters", apis.DeadLetterListApi.as_view(), name="dead-letters"),
    path("customers", apis.CustomerListApi.as_view(), name="customers"),
    path("customers/<slug:customer_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path("models", apis.CatalogModelListApi.as_view(), name="models"),
    path("models/<str:name>/tier-changes", apis.ModelTierChangeApi.as_view(), name="model-tier-changes"),
]
