from django.urls import path

from infra_inventory import economics_apis

urlpatterns = [
    path("unit-economics", economics_apis.UnitEconomicsApi.as_view(), name="unit-economics"),
    path("margin-alerts", economics_apis.MarginAlertListApi.as_view(), name="margin-alerts"),
    path("exports/focus", economics_apis.FocusExportApi.as_view(), name="focus-export"),
]
