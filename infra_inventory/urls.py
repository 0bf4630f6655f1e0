from django.urls import include, path

urlpatterns = [
    path("", include("infra_inventory.inventory_urls")),
    path("", include("infra_inventory.economics_urls")),
]
