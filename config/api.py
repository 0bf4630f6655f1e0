"""API plumbing shared by every app: key auth, scopes, throttling, pagination, bounded
instants and periods, JSON-only bodies and problem+json errors (RFC 9457, API.md
Conventions)."""

import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.utils import timezone
from django.views import defaults
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, parsers, permissions, serializers, throttling
from rest_framework.authentication import BaseAuthentication
from rest_framework.filters import BaseFilterBackend
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.mediatypes import media_type_matches

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
YEAR_MIN, YEAR_MAX = 2000, 2100  # every instant and period the API takes lies in these years (UTC)


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


_redis = None
_redis_lock = threading.Lock()


def redis_client():
    """One Redis client per process (its pool is thread-safe): Django's cache makes a new
    client, with its ~170 response callbacks, on every call. Made under a lock: two
    threads racing would each make one, and the loser's sockets close under it."""
    global _redis
    with _redis_lock:
        if _redis is None:
            import redis

            _redis = redis.Redis.from_url(settings.REDIS_URL)
        return _redis


class KeyRateThrottle(throttling.BaseThrottle):
    """Per-key rate; views name their bucket in `throttle_scope` (rates read from settings
    on every request, so they can be changed without a restart). A window of the rate's
    duration opens at a key's first request and counts in Redis: one round trip and O(1)
    whatever the rate (DRF's SimpleRateThrottle reads and writes the key's whole list of
    request times, 60,000 entries at 1,000 balance reads a second: 3.7 ms a request)."""

    def allow_request(self, request, view):
        if request.auth is None:
            return True
        allowed, self.ttl_s = key_rate_allows(bucket=getattr(view, "throttle_scope", "read"),
                                              key_hash=request.auth.key_hash)
        return allowed

    def wait(self):
        return max(self.ttl_s, 1)


def key_rate_allows(*, bucket: str, key_hash: str) -> tuple[bool, int]:
    """Count one request of the key in the bucket's window: (within the rate, seconds the
    window has left)."""
    rate = {"ingest": settings.USAGE_INGEST_RATE, "balance": settings.BALANCE_READ_RATE}.get(
        bucket, settings.API_READ_RATE)
    allowed, duration = throttling.SimpleRateThrottle.parse_rate(None, rate)
    key = f"throttle:{bucket}:{key_hash[:24]}"
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(key, 0, ex=duration, nx=True).incr(key).ttl(key)
    _, count, ttl_s = pipe.execute()
    return count <= allowed, ttl_s


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


def is_in_years(moment: datetime) -> bool:
    """YEAR_MIN–YEAR_MAX, in UTC. Far outside any ledger, a date only overflows the date
    arithmetic behind it (a year 1 minus a lookback), so it is refused where it comes in."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime(YEAR_MIN, 1, 1, tzinfo=UTC) <= moment < datetime(YEAR_MAX + 1, 1, 1, tzinfo=UTC)


YEARS_TEXT = f"Must lie in the years {YEAR_MIN}–{YEAR_MAX} (UTC)."


class InstantField(serializers.DateTimeField):
    """An RFC 3339 instant in YEAR_MIN–YEAR_MAX (a field error otherwise). Every instant
    the API takes is one of these."""

    def to_internal_value(self, value):
        moment = super().to_internal_value(value)
        if not is_in_years(moment):
            raise serializers.ValidationError(YEARS_TEXT)
        return moment


PERIOD_PATTERN = r"^(20\d\d|2100)-(0[1-9]|1[0-2])$"  # YEAR_MIN–YEAR_MAX


@extend_schema_field({"type": "string", "pattern": PERIOD_PATTERN, "example": "2026-10",
                      "description": f"A billing period YYYY-MM, {YEAR_MIN} to the current month."})
class PeriodField(serializers.CharField):
    """A billing period `YYYY-MM` → the first day of that month; in YEAR_MIN–YEAR_MAX and
    not after the current month (a field error otherwise)."""

    def to_internal_value(self, value):
        text = super().to_internal_value(value)
        if not re.fullmatch(PERIOD_PATTERN, text):
            raise serializers.ValidationError(f"Use YYYY-MM, in the years {YEAR_MIN}–{YEAR_MAX}.")
        period, today = date(int(text[:4]), int(text[5:]), 1), timezone.now().astimezone(UTC).date()
        if period > today.replace(day=1):
            raise serializers.ValidationError(f"Must not be after the current period, {today:%Y-%m}.")
        return period

    def to_representation(self, value):
        return f"{value:%Y-%m}"


def group_by_keys(value: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma list of grouping keys, each one of `allowed`, none twice."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise serializers.ValidationError(f"Unknown key(s) {', '.join(unknown)}; use {', '.join(allowed)}.")
    if len(set(keys)) != len(keys):
        raise serializers.ValidationError("A key is named twice.")
    return keys


class EqualityFilter(BaseFilterBackend):
    """`?name=value` for each name in the view's `filters`, matched exactly (on the lookup
    `filter_lookups` names, else the field of that name), and listed in the schema."""

    def filter_queryset(self, request, queryset, view):
        lookups = getattr(view, "filter_lookups", {})
        for name in view.filters:
            if value := request.query_params.get(name):
                if "\x00" in value:  # Postgres text cannot hold it: no row could match
                    raise serializers.ValidationError({name: ["Null characters are not allowed."]})
                queryset = queryset.filter(**{lookups.get(name, name): value})
        return queryset

    def get_schema_operation_parameters(self, view):
        return [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in view.filters]


class PeriodQuerySerializer(serializers.Serializer):
    """`start` (inclusive) and `end` (exclusive), both on the hour; at most `days_max` apart."""

    start = InstantField(help_text="Inclusive, on an hour boundary.", validators=[on_the_hour])
    end = InstantField(help_text="Exclusive, on an hour boundary.", validators=[on_the_hour])
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


def json_media_type_check(request) -> None:
    """A JSON-consuming operation takes `application/json` only: anything else (text, XML,
    a form, no Content-Type) is a 415, never guessed at."""
    content_type = request.META.get("CONTENT_TYPE", "")
    if not media_type_matches(parsers.JSONParser.media_type, content_type):
        raise exceptions.UnsupportedMediaType(content_type, detail=f"Send the body as application/json, not "
                                                                   f"{content_type or 'without a Content-Type'}.")


def json_body(request, *, bytes_max: int, exact_numbers: bool = False, loads=json.loads):
    """The body as JSON, refusing anything over bytes_max before reading it all (413);
    with exact_numbers, decimals are read as Decimal, never float. `loads` decodes
    otherwise (usage ingestion passes one that survives any nesting depth); a body
    nested too deeply for the decoder is a 400, never a RecursionError's 500. Not JSON
    by its Content-Type: 415."""
    json_media_type_check(request)
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > bytes_max:
        raise PayloadTooLarge(f"The body is {declared} bytes; at most {bytes_max} are accepted.")
    raw = request._request.read(bytes_max + 1)
    if len(raw) > bytes_max:
        raise PayloadTooLarge(f"The body is larger than {bytes_max} bytes.")
    try:
        if exact_numbers:
            return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        return loads(raw)
    except (ValueError, RecursionError) as exc:
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


def problem_body(*, status: int, title: str, detail: str, code: str, errors=None, extra=None) -> dict:
    body = {"type": f"https://tokenledger.dev/problems/{code}", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return body


def problem_response(*, status: int, title: str, detail: str, code: str, errors=None, extra=None, headers=None):
    """A problem from a DRF view (rendered by DRF)."""
    body = problem_body(status=status, title=title, detail=detail, code=code, errors=errors, extra=extra)
    return Response(body, status=status, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def problem_json_response(*, status: int, title: str, detail: str, code: str, extra=None,
                          headers=None) -> JsonResponse:
    """A problem from plain Django (URL resolver, middleware), where no DRF renderer runs."""
    body = problem_body(status=status, title=title, detail=detail, code=code, extra=extra)
    return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _field_errors(detail) -> dict:
    """DRF's error detail as field → list of messages, one level deep: a nested serializer's
    errors are named by path (`token_weights.audio_output`, `prices[1].unit_price`)."""
    if not isinstance(detail, dict):
        return {"non_field_errors": [str(m) for m in (detail if isinstance(detail, list) else [detail])]}
    flat: dict[str, list[str]] = {}

    def walk(path: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():  # a list's errors come keyed by index
                walk(f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key), item)
        elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
            for index, item in enumerate(value):
                if item:  # a valid element of a list answers {}
                    walk(f"{path}[{index}]", item)
        else:
            flat.setdefault(path, []).extend(str(m) for m in (value if isinstance(value, list) else [value]))

    walk("", detail)
    return flat


def problem_exception_handler(exc, context):
    """Every error the API returns goes through here, as application/problem+json, whatever
    the request's `Accept` named: a document view negotiates its document, not its errors."""
    request = context.get("request")
    if request is not None:
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), PROBLEM_CONTENT_TYPE
    return _problem(exc)


def _problem(exc):
    from rest_framework.views import set_rollback  # DRF's views import this module's classes

    if isinstance(exc, DomainError):
        set_rollback()
        return problem_response(
            status=exc.status, title=exc.title, detail=exc.detail, code=exc.code, errors=exc.errors, extra=exc.extra
        )
    if isinstance(exc, RequestDataTooBig):  # DRF reads a JSON body as request.body
        return _problem(PayloadTooLarge(f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."))
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
        title = str(exc.default_detail)  # a template, for some ('Method "{method}" not allowed.')
        return problem_response(
            status=exc.status_code, title=HTTPStatus(exc.status_code).phrase if "{" in title else title,
            detail=str(exc.detail), code=exc.default_code, headers=headers,
        )
    logger.exception("Unhandled API error", exc_info=exc)
    return problem_response(status=500, title="Internal server error", detail="The error was logged.", code="internal")


def not_found(request, exception):
    """Django's 404, when no URL matched (`/api/v1/invoices/abc`): a problem under /api/,
    the usual page elsewhere."""
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    return problem_json_response(status=404, title="Not found.", detail=f"No resource at {request.path}.",
                                 code="not_found")
