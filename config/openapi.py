"""The OpenAPI schema says what the API answers (API.md Conventions): bearer keys, every
error status an operation can answer with its problem+json body, the list envelope, and
each document's own content type (from the view's renderers)."""

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import ResolvedComponent, is_serializer
from drf_spectacular.utils import OpenApiResponse, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination

from config.api import PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "description": "Field → messages, where fields are at fault.",
                   "additionalProperties": {"type": "array", "items": {}}},
    },
}
PROBLEMS = {
    400: "Malformed body: not JSON.",
    401: "No key, or an unknown or revoked one.",
    403: "The key's scope does not allow this.",
    404: "Not found, or not yours.",
    406: "`Accept` names none of this operation's content types.",
    409: "Conflicts with the current state.",
    413: "Body too large.",
    415: "The body is not `application/json`.",
    422: "Valid JSON (or query) that breaks a rule; `errors` per field.",
    429: "Throttled; retry after `Retry-After` seconds.",
    503: "A backing service is unavailable; nothing was done.",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
}


def problem(status: int) -> OpenApiResponse:
    """For `extend_schema(responses=...)`: a status only some operations answer (409, 503)."""
    return OpenApiResponse(description=PROBLEMS[status])


@extend_schema_serializer(many=False)  # already the list: not wrapped in the paginator's envelope again
class PageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)


def page_of(item: type[serializers.Serializer], **fields: serializers.Field) -> PageSerializer:
    """The list envelope `{"next", "results"}` (plus `fields`) around `item`s, for views that
    build the page by hand."""
    name = item.__name__.removesuffix("Serializer")
    return type(f"Paginated{name}List", (PageSerializer,), {"results": item(many=True), **fields})()


# Response-only fields: decimals as the API writes them (billing.rating.money, API.md Money).
@extend_schema_field({"type": "string", "format": "decimal", "pattern": r"^-?\d+\.\d{2}$", "example": "12.34"})
class MoneyField(serializers.CharField):
    """Two decimals (`money_text`)."""


@extend_schema_field({"type": "string", "format": "decimal", "pattern": r"^\d+\.\d{2,6}$", "example": "2.50"})
class UnitPriceField(serializers.CharField):
    """Two to six decimals (`unit_price_text`)."""


@extend_schema_field({"type": "string", "format": "decimal", "pattern": r"^\d+\.\d{3}$", "example": "812.500"})
class KwhField(serializers.CharField):
    """kWh to three decimals (Wh)."""


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "config.api.ApiKeyAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`."}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, plus the problems each operation can answer: 401/403/429
    wherever a key is checked, 406 everywhere, 404 with path parameters (or a cursor),
    400/413/415/422 with a body, 422 with validated query parameters (or filters), and those a view
    names per method in `problem_statuses`; statuses >= 400 all carry the shared `Problem`."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in self._problem_statuses(operation):
            responses.setdefault(str(status), {})
        component = ResolvedComponent(name="Problem", type=ResolvedComponent.SCHEMA, object="Problem",
                                      schema=PROBLEM_SCHEMA)
        self.registry.register_on_missing(component)
        for code, response in responses.items():
            if int(code) >= 400:
                response["description"] = response.get("description") or PROBLEMS.get(int(code), "")
                response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": component.ref}}
                if int(code) in HEADERS:
                    response["headers"] = HEADERS[int(code)]
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _is_list_view(self, serializer=None) -> bool:
        """A `page_of` response is a list too: a `_list` id and the paginator's parameters."""
        responses = self.get_response_serializers() if serializer is None else serializer
        if isinstance(responses, dict) and responses:
            responses = responses[min(responses, key=str)]
        return isinstance(responses, PageSerializer) or super()._is_list_view(serializer)

    def _problem_statuses(self, operation: dict) -> list[int]:
        statuses = [406]
        if operation.get("security"):
            statuses += [401, 403]
        if self.view.get_throttles():
            statuses.append(429)
        if "{" in self.path or isinstance(self._get_paginator(), CursorPagination):
            statuses.append(404)
        if "requestBody" in operation:
            statuses += [400, 413, 415, 422]
        if getattr(self.view, "filter_backends", None) or any(
                is_serializer(parameter) for parameter in self.get_override_parameters()):
            statuses.append(422)
        return statuses + list(getattr(self.view, "problem_statuses", {}).get(self.method, ()))
