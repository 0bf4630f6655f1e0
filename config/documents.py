"""Views that answer a document (a PDF, a CSV) rather than JSON.

`Accept` is honoured for the document's own type, for `*/*`, or when absent; any other
`Accept` is a 406, decided only after the key, the scope and the lookup, so a document
that is not yours is a 404 whatever was asked for. Errors are problem+json either way
(config.api.problem_exception_handler)."""

from django.http import HttpResponse, StreamingHttpResponse
from rest_framework import exceptions
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.views import APIView

from config.api import PROBLEM_CONTENT_TYPE


class DocumentRenderer(BaseRenderer):
    """Names a document type for negotiation and the schema; the view writes the bytes."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class PdfRenderer(DocumentRenderer):
    media_type, format, charset, render_style = "application/pdf", "pdf", None, "binary"


class CsvRenderer(DocumentRenderer):
    media_type, format, charset = "text/csv", "csv", "utf-8"


class DocumentApi(APIView):
    """A subclass sets `renderer_classes = [PdfRenderer]` (or CSV) and answers with
    `document_response(...)` once it has found the document."""

    not_acceptable: exceptions.NotAcceptable | None = None

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except exceptions.NotAcceptable as exc:
            self.not_acceptable = exc  # raised by document_response: after 401, 403 and 404
            return JSONRenderer(), PROBLEM_CONTENT_TYPE

    def document_response(self, content, *, filename: str, streaming: bool = False) -> HttpResponse:
        if self.not_acceptable is not None:
            raise self.not_acceptable
        renderer = self.renderer_classes[0]
        content_type = f"{renderer.media_type}; charset={renderer.charset}" if renderer.charset else renderer.media_type
        response = (StreamingHttpResponse if streaming else HttpResponse)(content, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
