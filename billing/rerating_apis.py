"""REST endpoints of re-rating (API.md: Invoices, `rerate-preview` and `rerate`)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import actor_of
from billing.models import Invoice
from billing.note_apis import NoteReratingLineSerializer, NoteReratingSerializer, rerating_line_json
from billing.services.rerating import difference_json, invoice_rerate, invoice_rerate_preview
from config.openapi import MoneyField, problem
from metering.services import utc_now


class RerateRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class RerateResultSerializer(serializers.Serializer):
    difference = MoneyField()
    lines = NoteReratingLineSerializer(many=True)
    document = serializers.DictField(required=False, help_text="The credit or debit note issued: kind, id, number, "
                                                               "amount.")


class InvoiceReratePreviewApi(APIView):
    scopes = ("admin",)

    @extend_schema(request=None, responses={200: NoteReratingSerializer, 409: problem(409), 422: problem(422)},
                   description="What the finalized invoice's period bills now (ledger with its adjustments, price "
                               "books and contract in force now) against what it billed, line key by line key. "
                               "Writes nothing.")
    def post(self, request, invoice_id):
        invoice = get_object_or_404(Invoice.objects.select_related("customer"), pk=invoice_id)
        result = invoice_rerate_preview(invoice)
        return Response({"difference": f"{result.difference:.2f}",
                         "lines": [rerating_line_json(difference_json(d)) for d in result.differences]})


class InvoiceRerateApi(APIView):
    scopes = ("admin",)

    @extend_schema(request=RerateRequestSerializer,
                   responses={201: RerateResultSerializer, 200: RerateResultSerializer, 409: problem(409),
                              422: problem(422)},
                   description="Issue the difference as a credit note (over-billed) or a debit note (under-billed), "
                               "`201`; `200` with difference 0.00 when there is none. Applying twice, or twice at "
                               "once, issues one document.")
    def post(self, request, invoice_id):
        get_object_or_404(Invoice, pk=invoice_id)
        data = RerateRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rerating = invoice_rerate(invoice_id=invoice_id, reason=data.validated_data["reason"],
                                  actor=actor_of(request), as_of=utc_now())
        if rerating is None:
            return Response({"difference": "0.00", "lines": []}, status=status.HTTP_200_OK)
        note = rerating.credit_note or rerating.debit_note
        document = {"kind": "credit_note" if rerating.credit_note else "debit_note", "id": note.pk,
                    "number": note.number, "amount": f"{note.amount:.2f}"}
        return Response({"difference": f"{rerating.difference:.2f}",
                         "lines": [rerating_line_json(line) for line in rerating.lines], "document": document},
                        status=status.HTTP_201_CREATED)
