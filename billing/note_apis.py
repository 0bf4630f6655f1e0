"""REST endpoints for credit and debit notes on their own (API.md: Invoices): list, detail
and PDF of each kind, with the re-rating that issued a note when one did.

A `customer` key sees its own customer's notes; another customer's note answers 404, as if
it did not exist (the lookup runs on the visible notes only). Credit and debit notes
answer the same shape, so one set of views serves both, told apart by `model`.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.documents import credit_note_pdf, debit_note_pdf, note_rerating
from billing.models import CreditNote, DebitNote, InvoiceLine
from billing.rating.money import money_text as money
from config.api import NextPagination, customer_scope_of
from config.documents import DocumentApi, PdfRenderer
from config.openapi import MoneyField, page_of

PK_MAX = 2**63 - 1  # bigint: a larger id can match no row, and Postgres would refuse it
RERATING_LINE_KINDS = [InvoiceLine.Kind.USAGE, InvoiceLine.Kind.LATE_USAGE, InvoiceLine.Kind.DISCOUNT,
                       InvoiceLine.Kind.MINIMUM, InvoiceLine.Kind.CAPACITY]


def notes_visible(request, model: type[CreditNote] | type[DebitNote]):
    """Notes the key may see: all for admin, its own customer's otherwise (others → 404)."""
    notes = model.objects.select_related("invoice__customer", "rerating")
    bound = customer_scope_of(request)
    return notes.filter(invoice__customer__customer_id=bound) if bound else notes


def note_json(note: CreditNote | DebitNote) -> dict:
    invoice, rerating = note.invoice, note_rerating(note)
    return {
        "id": note.pk, "number": note.number, "invoice_id": invoice.pk, "invoice_number": invoice.number,
        "customer_id": invoice.customer.customer_id, "amount": money(note.amount), "currency": invoice.currency,
        "reason": note.reason, "created_by": note.created_by, "created_at": note.created_at.isoformat(),
        "rerating": None if rerating is None else {
            "difference": money(rerating.difference), "lines": [rerating_line_json(line) for line in rerating.lines]},
    }


def rerating_line_json(line: dict) -> dict:
    """A line as the re-rating stored it (API.md rerate-preview); blanks as null."""
    return {"kind": line["kind"], "model": line.get("model") or None, "service_tier": line.get("service_tier") or None,
            "token_class": line.get("token_class") or None, "period": line.get("period") or None,
            "billed_tokens": line.get("billed_tokens"), "tokens": line.get("tokens"),
            "billed_amount": line["billed_amount"], "amount": line["amount"], "difference": line["difference"]}


class NoteReratingLineSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=RERATING_LINE_KINDS)
    model = serializers.CharField(allow_null=True)
    service_tier = serializers.CharField(allow_null=True)
    token_class = serializers.CharField(allow_null=True)
    period = serializers.CharField(allow_null=True, help_text="YYYY-MM of the usage, on late usage lines.")
    billed_tokens = serializers.IntegerField(allow_null=True, help_text="What the invoice billed.")
    tokens = serializers.IntegerField(allow_null=True, help_text="What the period rates at now.")
    billed_amount = MoneyField()
    amount = MoneyField()
    difference = MoneyField(help_text="amount − billed_amount.")


class NoteReratingSerializer(serializers.Serializer):
    difference = MoneyField(help_text="Now − billed: negative when over-billed (a credit note), positive when "
                                      "under-billed (a debit note).")
    lines = NoteReratingLineSerializer(many=True)


class NoteSerializer(serializers.Serializer):
    """A credit or a debit note against a finalized invoice."""

    id = serializers.IntegerField()
    number = serializers.CharField(help_text="CN-YYYY-NNNNNN or DN-YYYY-NNNNNN.")
    invoice_id = serializers.IntegerField()
    invoice_number = serializers.CharField()
    customer_id = serializers.CharField()
    amount = MoneyField(help_text="Positive: credited off or owed on top of the invoice's total.")
    currency = serializers.CharField()
    reason = serializers.CharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    rerating = NoteReratingSerializer(allow_null=True, help_text="The re-rating that issued the note; null when issued "
                                                             "by hand.")


class NoteQuerySerializer(serializers.Serializer):
    customer_id = serializers.CharField(required=False, max_length=64)
    invoice_id = serializers.IntegerField(required=False, min_value=1, max_value=PK_MAX)


class NoteApi(APIView):
    """Each route sets `model` (CreditNote or DebitNote) and, with a note in its path,
    `lookup`: the name of that path parameter."""

    scopes = ("customer",)
    model: type[CreditNote] | type[DebitNote] | None = None
    lookup: str | None = None

    def note(self, request, kwargs) -> CreditNote | DebitNote:
        return get_object_or_404(notes_visible(request, self.model), pk=kwargs[self.lookup])


class NoteListApi(NoteApi):
    pagination_class = NextPagination

    @extend_schema(parameters=[NoteQuerySerializer], responses={200: page_of(NoteSerializer)})
    def get(self, request):
        query = NoteQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        lookups = {"customer_id": "invoice__customer__customer_id", "invoice_id": "invoice_id"}
        notes = notes_visible(request, self.model).filter(
            **{lookups[name]: value for name, value in query.validated_data.items()})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(notes.order_by("-created_at", "-pk"), request, view=self)
        return paginator.get_paginated_response([note_json(note) for note in page])


class NoteDetailApi(NoteApi):
    @extend_schema(responses={200: NoteSerializer})
    def get(self, request, **kwargs):
        return Response(note_json(self.note(request, kwargs)))


class NotePdfApi(NoteApi, DocumentApi):
    """The note as a PDF a customer could receive."""

    renderer_classes = [PdfRenderer]

    @extend_schema(responses={200: OpenApiTypes.BINARY})
    def get(self, request, **kwargs):
        note = self.note(request, kwargs)
        pdf = credit_note_pdf(note) if isinstance(note, CreditNote) else debit_note_pdf(note)
        return self.document_response(pdf, filename=f"{note.number}.pdf")
