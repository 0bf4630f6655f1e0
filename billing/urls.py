from django.urls import path

from billing import apis

urlpatterns = [
    path("usage", apis.UsageApi.as_view(), name="usage"),
    path("price-books", apis.PriceBookListApi.as_view(), name="price-books"),
    path("customers/<slug:customer_id>/contract", apis.ContractApi.as_view(), name="customer-contract"),
    path("customers/<slug:customer_id>/credits", apis.CreditListApi.as_view(), name="customer-credits"),
    path("customers/<slug:customer_id>/upcoming-invoice", apis.UpcomingInvoiceApi.as_view(),
         name="customer-upcoming-invoice"),
]
