"""REST endpoints for invoices, credit notes and billing runs (API.md: Invoices)."""

from datetime import date
from decimal import Decimal

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import actor_of, usage_dates_json
from billing.rating.money import money_text as money
from billing.rating.money import unit_price_text
from billing.models import BillingRun, CreditNote, Invoice
from billing.services.billing_runs import billing_run_create
from billing.services.invoices import credit_note_issue
from config.api import NextPagination, customer_scope_of
from metering.services import utc_now


def invoices_visible(request):
    """Invoices the key may see: all for admin, its own customer's otherwise (others → 404)."""
    invoices = Invoice.objects.select_related("customer").prefetch_related("lines", "credit_notes")
    bound = customer_scope_of(request)
    return invoices.filter(customer__customer_id=bound) if bound else invoices


def invoice_json(invoice: Invoice) -> dict:
    credited = sum((note.amount for note in invoice.credit_notes.all()), Decimal(0))
    return {
        "id": invoice.pk, "number": invoice.number, "customer_id": invoice.customer.customer_id,
        "period": f"{invoice.period:%Y-%m}", "status": invoice.status, "currency": invoice.currency,
        "lines": [{"kind": line.kind, "description": line.description, "model": line.model or None,
                   "service_tier": line.service_tier or None, "token_class": line.token_class or None,
                   "tokens": line.tokens or None, "unit_price": unit_price_text(line.unit_price),
                   "amount": money(line.amount), "period": line.usage_period or None,
                   **usage_dates_json(line.usage_start, line.usage_end)}
                  for line in invoice.lines.all()],
        "subtotal": money(invoice.subtotal), "total": money(invoice.total),
        "credited": money(credited), "issued_at": invoice.issued_at.isoformat() if invoice.issued_at else None,
        "due_at": invoice.due_at.isoformat() if invoice.due_at else None,
        "credit_notes": [credit_note_json(note, invoice) for note in invoice.credit_notes.all()],
    }


def credit_note_json(note: CreditNote, invoice: Invoice) -> dict:
    return {"number": note.number, "invoice_id": invoice.pk, "amount": money(note.amount), "reason": note.reason,
            "created_by": note.created_by, "created_at": note.created_at.isoformat()}


@extend_schema(parameters=[OpenApiParameter("customer_id", str), OpenApiParameter("period", str),
                           OpenApiParameter("status", str, enum=Invoice.Status.values)],
               responses={200: OpenApiTypes.OBJECT})
class InvoiceListApi(APIView):
    scopes = ("customer",)

    def get(self, request):
        invoices = invoices_visible(request)
        params = request.query_params
        if customer_id := params.get("customer_id"):
            invoices = invoices.filter(customer__customer_id=customer_id)
        if period := params.get("period"):
            try:
                year, month = (int(part) for part in period.split("-"))
                invoices = invoices.filter(period=date(year, month, 1))
            except ValueError as exc:
                raise serializers.ValidationError({"period": ["Use YYYY-MM."]}) from exc
        if status_ := params.get("status"):
            invoices = invoices.filter(status=status_)
        paginator = NextPagination()
        page = paginator.paginate_queryset(invoices.order_by("-period", "pk"), request, view=self)
        return paginator.get_paginated_response([invoice_json(invoice) for invoice in page])


class InvoiceDetailApi(APIView):
    scopes = ("customer",)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, invoice_id):
        return Response(invoice_json(get_object_or_404(invoices_visible(request), pk=invoice_id)))


class InvoiceDocumentApi(APIView):
    """The invoice as a PDF a customer could receive, or its lines as CSV."""

    scopes = ("customer",)
    kind = "pdf"

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    def get(self, request, invoice_id):
        from billing.documents import invoice_csv, invoice_pdf

        invoice = get_object_or_404(invoices_visible(request), pk=invoice_id)
        name = invoice.number or f"draft-{invoice.customer.customer_id}-{invoice.period:%Y-%m}"
        if self.kind == "pdf":
            response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        else:
            response = HttpResponse(invoice_csv(invoice), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}.{self.kind}"'
        return response


class InvoiceTransitionApi(APIView):
    """POST /invoices/{id}/finalize | void | mark-paid: 409 from a status that forbids it."""

    scopes = ()
    service = None

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request, invoice_id):
        get_object_or_404(Invoice, pk=invoice_id)
        self.service(invoice_id=invoice_id, actor=actor_of(request), as_of=utc_now())
        return Response(invoice_json(invoices_visible(request).get(pk=invoice_id)))


class CreditNoteSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    reason = serializers.CharField(max_length=500)


class CreditNoteApi(APIView):
    scopes = ("customer",)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, invoice_id):
        invoice = get_object_or_404(invoices_visible(request), pk=invoice_id)
        return Response({"next": None, "results": [credit_note_json(n, invoice) for n in invoice.credit_notes.all()]})

    @extend_schema(request=CreditNoteSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request, invoice_id):
        if customer_scope_of(request) is not None:
            self.permission_denied(request, "Only an admin key issues credit notes.")
        get_object_or_404(Invoice, pk=invoice_id)
        data = CreditNoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        note = credit_note_issue(invoice_id=invoice_id, **data.validated_data, actor=actor_of(request),
                                 as_of=utc_now())
        return Response(credit_note_json(note, note.invoice), status=status.HTTP_201_CREATED)


class BillingRunSerializer(serializers.ModelSerializer):
    period = serializers.RegexField(r"^\d{4}-(0[1-9]|1[0-2])$", help_text="YYYY-MM")

    class Meta:
        model = BillingRun
        fields = ["id", "period", "finalize", "status", "customers_total", "customers_done", "requested_by",
                  "created_at", "started_at", "finished_at", "error"]
        read_only_fields = [f for f in fields if f not in ("period", "finalize")]

    def to_representation(self, run):
        data = super().to_representation(run)
        data["period"] = f"{run.period:%Y-%m}"
        return data


class BillingRunListApi(APIView):
    scopes = ()

    @extend_schema(request=BillingRunSerializer, responses={202: BillingRunSerializer})
    def post(self, request):
        data = BillingRunSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        year, month = (int(part) for part in data.validated_data["period"].split("-"))
        run = billing_run_create(period=date(year, month, 1), finalize=data.validated_data.get("finalize", False),
                                 actor=actor_of(request), as_of=utc_now())
        return Response(BillingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class BillingRunDetailApi(APIView):
    scopes = ()

    @extend_schema(responses={200: BillingRunSerializer})
    def get(self, request, run_id):
        return Response(BillingRunSerializer(get_object_or_404(BillingRun, pk=run_id)).data)
