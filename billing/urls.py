from django.urls import path

from billing import apis, invoice_apis, webhook_apis
from billing.services.invoices import invoice_finalize, invoice_mark_paid, invoice_void

urlpatterns = [
    path("usage", apis.UsageApi.as_view(), name="usage"),
    path("price-books", apis.PriceBookListApi.as_view(), name="price-books"),
    path("customers/<slug:customer_id>/contract", apis.ContractApi.as_view(), name="customer-contract"),
    path("customers/<slug:customer_id>/credits", apis.CreditListApi.as_view(), name="customer-credits"),
    path("customers/<slug:customer_id>/upcoming-invoice", apis.UpcomingInvoiceApi.as_view(),
         name="customer-upcoming-invoice"),
    path("invoices", invoice_apis.InvoiceListApi.as_view(), name="invoices"),
    path("invoices/<int:invoice_id>", invoice_apis.InvoiceDetailApi.as_view(), name="invoice-detail"),
    path("invoices/<int:invoice_id>/pdf", invoice_apis.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path("invoices/<int:invoice_id>/csv", invoice_apis.InvoiceCsvApi.as_view(), name="invoice-csv"),
    path("invoices/<int:invoice_id>/finalize", invoice_apis.InvoiceTransitionApi.as_view(service=invoice_finalize),
         name="invoice-finalize"),
    path("invoices/<int:invoice_id>/void", invoice_apis.InvoiceTransitionApi.as_view(service=invoice_void),
         name="invoice-void"),
    path("invoices/<int:invoice_id>/mark-paid", invoice_apis.InvoiceTransitionApi.as_view(service=invoice_mark_paid),
         name="invoice-mark-paid"),
    path("invoices/<int:invoice_id>/credit-notes", invoice_apis.CreditNoteApi.as_view(), name="invoice-credit-notes"),
    path("billing-runs", invoice_apis.BillingRunListApi.as_view(), name="billing-runs"),
    path("billing-runs/<int:run_id>", invoice_apis.BillingRunDetailApi.as_view(), name="billing-run-detail"),
    path("webhook-endpoints", webhook_apis.WebhookEndpointListApi.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<int:endpoint_id>", webhook_apis.WebhookEndpointDetailApi.as_view(),
         name="webhook-endpoint-detail"),
    path("webhook-endpoints/<int:endpoint_id>/deliveries", webhook_apis.WebhookDeliveryListApi.as_view(),
         name="webhook-endpoint-deliveries"),
]
