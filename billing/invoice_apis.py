"""REST endpoints for invoices, credit notes on an invoice and billing runs (API.md: Invoices).
The credit and debit notes on their own are billing.note_apis."""

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import InvoiceLineSerializer, actor_of, invoice_line_json
from billing.rating.money import money_text as money
from billing.models import BillingRun, CreditNote, DebitNote, Invoice
from billing.services.billing_runs import billing_run_create
from billing.services.invoices import credit_note_issue
from config.api import NextPagination, PeriodField, customer_scope_of
from config.documents import CsvRenderer, DocumentApi, PdfRenderer
from config.openapi import MoneyField, page_of, problem
from metering.services import utc_now


def invoices_visible(request):
    """Invoices the key may see: all for admin, its own customer's otherwise (others → 404)."""
    invoices = Invoice.objects.select_related("customer").prefetch_related("lines", "credit_notes", "debit_notes")
    bound = customer_scope_of(request)
    return invoices.filter(customer__customer_id=bound) if bound else invoices


def invoice_json(invoice: Invoice) -> dict:
    credited = sum((note.amount for note in invoice.credit_notes.all()), Decimal(0))
    debited = sum((note.amount for note in invoice.debit_notes.all()), Decimal(0))
    return {
        "id": invoice.pk, "number": invoice.number, "customer_id": invoice.customer.customer_id,
        "period": f"{invoice.period:%Y-%m}", "status": invoice.status, "currency": invoice.currency,
        "lines": [invoice_line_json(line, period=line.usage_period) for line in invoice.lines.all()],
        "subtotal": money(invoice.subtotal), "total": money(invoice.total),
        "credited": money(credited), "debited": money(debited),
        "issued_at": invoice.issued_at.isoformat() if invoice.issued_at else None,
        "due_at": invoice.due_at.isoformat() if invoice.due_at else None,
        "credit_notes": [invoice_note_json(note, invoice) for note in invoice.credit_notes.all()],
        "debit_notes": [invoice_note_json(note, invoice) for note in invoice.debit_notes.all()],
    }


def invoice_note_json(note: CreditNote | DebitNote, invoice: Invoice) -> dict:
    """A credit or debit note as its invoice lists it; GET /credit-notes/{id} (note_apis) has the rest."""
    return {"id": note.pk, "number": note.number, "invoice_id": invoice.pk, "amount": money(note.amount),
            "reason": note.reason, "created_by": note.created_by, "created_at": note.created_at.isoformat()}


class CreditNoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField()
    invoice_id = serializers.IntegerField()
    amount = MoneyField()
    reason = serializers.CharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class DebitNoteSerializer(CreditNoteSerializer):
    """A debit note as its invoice lists it: the same fields as a credit note."""


class InvoiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField(allow_null=True, help_text="Null while draft.")
    customer_id = serializers.CharField()
    period = PeriodField()
    status = serializers.ChoiceField(choices=Invoice.Status.values)
    currency = serializers.CharField()
    lines = InvoiceLineSerializer(many=True)
    subtotal = MoneyField()
    total = MoneyField()
    credited = MoneyField(help_text="The sum of its credit notes.")
    debited = MoneyField(help_text="The sum of its debit notes: owed on top of the total.")
    issued_at = serializers.DateTimeField(allow_null=True)
    due_at = serializers.DateTimeField(allow_null=True)
    credit_notes = CreditNoteSerializer(many=True)
    debit_notes = DebitNoteSerializer(many=True)


class InvoiceQuerySerializer(serializers.Serializer):
    customer_id = serializers.CharField(required=False, max_length=64)
    period = PeriodField(required=False)
    status = serializers.ChoiceField(choices=Invoice.Status.values, required=False)


class InvoiceListApi(APIView):
    scopes = ("customer",)
    pagination_class = NextPagination

    @extend_schema(operation_id="invoices_list", parameters=[InvoiceQuerySerializer],
                   responses={200: page_of(InvoiceSerializer)})
    def get(self, request):
        query = InvoiceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        lookups = {"customer_id": "customer__customer_id", "period": "period", "status": "status"}
        invoices = invoices_visible(request).filter(
            **{lookups[name]: value for name, value in query.validated_data.items()})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(invoices.order_by("-period", "pk"), request, view=self)
        return paginator.get_paginated_response([invoice_json(invoice) for invoice in page])


class InvoiceDetailApi(APIView):
    scopes = ("customer",)

    @extend_schema(responses={200: InvoiceSerializer})
    def get(self, request, invoice_id):
        return Response(invoice_json(get_object_or_404(invoices_visible(request), pk=invoice_id)))


def invoice_file_name(invoice: Invoice) -> str:
    return invoice.number or f"draft-{invoice.customer.customer_id}-{invoice.period:%Y-%m}"


class InvoicePdfApi(DocumentApi):
    """The invoice as a PDF a customer could receive."""

    scopes = ("customer",)
    renderer_classes = [PdfRenderer]

    @extend_schema(responses={200: OpenApiTypes.BINARY})
    def get(self, request, invoice_id):
        from billing.documents import invoice_pdf

        invoice = get_object_or_404(invoices_visible(request), pk=invoice_id)
        return self.document_response(invoice_pdf(invoice), filename=f"{invoice_file_name(invoice)}.pdf")


class InvoiceCsvApi(DocumentApi):
    """The invoice's lines as CSV; the amount column sums to the total."""

    scopes = ("customer",)
    renderer_classes = [CsvRenderer]

    @extend_schema(responses={200: OpenApiTypes.STR})
    def get(self, request, invoice_id):
        from billing.documents import invoice_csv

        invoice = get_object_or_404(invoices_visible(request), pk=invoice_id)
        return self.document_response(invoice_csv(invoice), filename=f"{invoice_file_name(invoice)}.csv")


class InvoiceTransitionApi(APIView):
    """POST /invoices/{id}/finalize | void | mark-paid: 409 from a status that forbids it."""

    scopes = ()
    service = None

    @extend_schema(request=None, responses={200: InvoiceSerializer, 409: problem(409)})
    def post(self, request, invoice_id):
        get_object_or_404(Invoice, pk=invoice_id)
        self.service(invoice_id=invoice_id, actor=actor_of(request), as_of=utc_now())
        return Response(invoice_json(invoices_visible(request).get(pk=invoice_id)))


class CreditNoteIssueSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    reason = serializers.CharField(max_length=500)


class CreditNoteApi(APIView):
    scopes = ("customer",)
    pagination_class = None  # an invoice's few notes, all on one page

    @extend_schema(responses={200: page_of(CreditNoteSerializer)})
    def get(self, request, invoice_id):
        invoice = get_object_or_404(invoices_visible(request), pk=invoice_id)
        return Response({"next": None, "results": [invoice_note_json(n, invoice) for n in invoice.credit_notes.all()]})

    @extend_schema(request=CreditNoteIssueSerializer, responses={201: CreditNoteSerializer, 409: problem(409)})
    def post(self, request, invoice_id):
        if customer_scope_of(request) is not None:
            self.permission_denied(request, "Only an admin key issues credit notes.")
        get_object_or_404(Invoice, pk=invoice_id)
        data = CreditNoteIssueSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        note = credit_note_issue(invoice_id=invoice_id, **data.validated_data, actor=actor_of(request),
                                 as_of=utc_now())
        return Response(invoice_note_json(note, note.invoice), status=status.HTTP_201_CREATED)


class BillingRunSerializer(serializers.ModelSerializer):
    period = PeriodField()

    class Meta:
        model = BillingRun
        fields = ["id", "period", "finalize", "status", "customers_total", "customers_done", "requested_by",
                  "created_at", "started_at", "finished_at", "error"]
        read_only_fields = [f for f in fields if f not in ("period", "finalize")]


class BillingRunListApi(APIView):
    scopes = ()

    @extend_schema(request=BillingRunSerializer, responses={202: BillingRunSerializer})
    def post(self, request):
        data = BillingRunSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        run = billing_run_create(period=params["period"], finalize=params.get("finalize", False),
                                 actor=actor_of(request), as_of=utc_now())
        return Response(BillingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class BillingRunDetailApi(APIView):
    scopes = ()

    @extend_schema(responses={200: BillingRunSerializer})
    def get(self, request, run_id):
        return Response(BillingRunSerializer(get_object_or_404(BillingRun, pk=run_id)).data)
