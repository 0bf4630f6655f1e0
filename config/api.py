"""API plumbing shared by every app: key auth, scopes, throttling, pagination and
problem+json errors (RFC 9457, API.md Conventions)."""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, permissions, serializers, throttling
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.response import Response

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


class DomainError(Exception):
    """A business rule said no. Subclasses set a stable `code` and an HTTP `status`."""

    code = "domain_error"
    status = 422
    title = "Request breaks a business rule"

    def __init__(self, detail: str, *, errors: dict | None = None, extra: dict | None = None):
        super().__init__(detail)
        self.detail, self.errors, self.extra = detail, errors, extra or {}


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
    title = "Request body too large"


class RuleViolation(DomainError):
    code = "rule_violation"
    status = 422
    title = "Valid JSON that breaks a rule"


# --- authentication and scopes -------------------------------------------------


def api_key_hash(raw_key: str) -> str:
    """Keys are 256-bit random, so a plain SHA-256 is a sound at-rest hash."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>`; request.auth becomes the ApiKey row."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme != self.keyword or not raw_key.strip():
            raise exceptions.AuthenticationFailed("Authorization must be 'Bearer <api key>'.")
        from metering.models import ApiKey

        key = (
            ApiKey.objects.select_related("customer")
            .filter(key_hash=api_key_hash(raw_key.strip()), revoked_at__isnull=True)
            .first()
        )
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return (None, key)

    def authenticate_header(self, request):
        return self.keyword


@dataclass(frozen=True)
class StaffKey:
    """A signed-in staff user reading the API from an admin page (e.g. the dashboard):
    admin scope, safe methods only, throttled per user."""

    username: str
    scope: str = "admin"
    customer = None
    name = ""

    @property
    def key_hash(self) -> str:
        return f"staff-session-{self.username}"

    @property
    def actor(self) -> str:
        return f"user:{self.username}"


class StaffSessionAuthentication(BaseAuthentication):
    """Admin pages call the API with the staff session they already have; reads only."""

    def authenticate(self, request):
        user = getattr(request._request, "user", None)
        if request.method not in permissions.SAFE_METHODS or user is None or not user.is_active \
                or not user.is_staff:
            return None
        return (None, StaffKey(user.get_username()))


class HasScope(permissions.BasePermission):
    """A view lists the scopes it admits in `scopes`; `admin` is admitted everywhere."""

    def has_permission(self, request, view):
        key = request.auth
        if key is None:
            raise exceptions.NotAuthenticated("An API key is required: 'Authorization: Bearer <key>'.")
        allowed = set(getattr(view, "scopes", ())) | {"admin"}
        if key.scope not in allowed:
            raise exceptions.PermissionDenied(f"A key with scope '{key.scope}' cannot do this.")
        return True


def customer_scope_of(request) -> str | None:
    """The customer a `customer`-scoped key is bound to, else None (sees all)."""
    key = request.auth
    return key.customer.customer_id if key is not None and key.scope == "customer" else None


class KeyRateThrottle(throttling.SimpleRateThrottle):
    """Per-key rate; views name their bucket in `throttle_scope` (rates read from settings
    on every request, so they can be changed without a restart of the class)."""

    def __init__(self):
        pass  # the rate depends on the view: set in allow_request

    def allow_request(self, request, view):
        self.bucket = getattr(view, "throttle_scope", "read")
        self.rate = settings.USAGE_INGEST_RATE if self.bucket == "ingest" else settings.API_READ_RATE
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        if request.auth is None:
            return None
        return f"throttle:{self.bucket}:{request.auth.key_hash[:24]}"


# --- periods and groupings in query strings ---------------------------------------------


def is_on_the_hour(moment: datetime) -> bool:
    """Rollups, prices and allocated costs are kept per UTC hour: an instant is usable as a
    boundary when it starts one (10:00+05:30 does not)."""
    utc = moment.astimezone(UTC)
    return not (utc.minute or utc.second or utc.microsecond)


def on_the_hour(value: datetime | None) -> datetime | None:
    """A serializer field validator: `is_on_the_hour`, or a field error."""
    if value is not None and not is_on_the_hour(value):
        raise serializers.ValidationError("Must be on an hour boundary (UTC): usage, prices and costs are hourly.")
    return value


def group_by_keys(value: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma list of grouping keys, each one of `allowed`, none twice."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise serializers.ValidationError(f"Unknown key(s) {', '.join(unknown)}; use {', '.join(allowed)}.")
    if len(set(keys)) != len(keys):
        raise serializers.ValidationError("A key is named twice.")
    return keys


class PeriodQuerySerializer(serializers.Serializer):
    """`start` (inclusive) and `end` (exclusive), both on the hour; at most `days_max` apart."""

    start = serializers.DateTimeField(help_text="Inclusive, on an hour boundary.", validators=[on_the_hour])
    end = serializers.DateTimeField(help_text="Exclusive, on an hour boundary.", validators=[on_the_hour])
    days_max: int | None = None

    def validate(self, attrs):
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["Must be after start."]})
        if self.days_max is not None and attrs["end"] - attrs["start"] > timedelta(days=self.days_max):
            raise serializers.ValidationError({"end": [f"At most {self.days_max} days after start."]})
        return attrs


# --- request bodies ----------------------------------------------------------------


def _reject_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def json_body(request, *, bytes_max: int, exact_numbers: bool = False):
    """The body as JSON, refusing anything over bytes_max before reading it all (413);
    with exact_numbers, decimals are read as Decimal, never float."""
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > bytes_max:
        raise PayloadTooLarge(f"The body is {declared} bytes; at most {bytes_max} are accepted.")
    raw = request._request.read(bytes_max + 1)
    if len(raw) > bytes_max:
        raise PayloadTooLarge(f"The body is larger than {bytes_max} bytes.")
    try:
        if exact_numbers:
            return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        return json.loads(raw)
    except ValueError as exc:
        raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from exc


# --- pagination ------------------------------------------------------------------


class NextPagination(LimitOffsetPagination):
    """`{"next": url|null, "results": [...]}` as API.md says."""

    default_limit = 100
    max_limit = 1000

    def get_paginated_response(self, data):
        return Response({"next": self.get_next_link(), "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "properties": {"next": {"type": "string", "nullable": True, "format": "uri"}, "results": schema},
        }


class NextCursorPagination(CursorPagination):
    """Keyset pagination for append-only tables that grow while being read."""

    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"
    ordering = "-id"

    def get_paginated_response(self, data):
        return Response({"next": self.get_next_link(), "results": data})

    def get_paginated_response_schema(self, schema):
        return NextPagination.get_paginated_response_schema(self, schema)


# --- problem+json -------------------------------------------------------------------


def problem_response(*, status: int, title: str, detail: str, code: str, errors=None, extra=None, headers=None):
    body = {"type": f"https://tokenledger.dev/problems/{code}", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    response = Response(body, status=status, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    return response


def _field_errors(detail) -> dict:
    if isinstance(detail, dict):
        return {field: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])] for field, msgs in detail.items()}
    return {"non_field_errors": [str(m) for m in (detail if isinstance(detail, list) else [detail])]}


def problem_exception_handler(exc, context):
    """Every error the API returns goes through here, as application/problem+json."""
    from rest_framework.views import set_rollback  # DRF's views import this module's classes

    if isinstance(exc, DomainError):
        set_rollback()
        return problem_response(
            status=exc.status, title=exc.title, detail=exc.detail, code=exc.code, errors=exc.errors, extra=exc.extra
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        set_rollback()
        return problem_response(
            status=422, title="Validation failed", detail="One or more fields are invalid.",
            code="validation_failed", errors=_field_errors(exc.detail),
        )
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        headers = {}
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            exc.status_code = 401
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
        return problem_response(
            status=exc.status_code, title=str(exc.default_detail), detail=str(exc.detail),
            code=exc.default_code, headers=headers,
        )
    logger.exception("Unhandled API error", exc_info=exc)
    return problem_response(status=500, title="Internal server error", detail="The error was logged.", code="internal")
