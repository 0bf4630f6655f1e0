"""The operations endpoints (API.md Operations, docs/operations.md): `/healthz`, `/readyz`
and `/metrics`, at the root and under `/api/v1/`, without an API key.

They answer before the rest of the middleware (`OperationsEndpointsMiddleware`): probes
and Prometheus call by container name or IP, which ALLOWED_HOSTS rightly doesn't list,
and none of these views builds a URL from the Host header. `/metrics` is open to the
networks METRICS_ALLOWED_NETWORKS lists (loopback by default); any other client needs an
admin API key as Bearer.
"""

import ipaddress

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, path, resolve
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.api import api_key_hash, problem_json_response
from config.metrics.exposition import process_registry
from config.metrics.facts import FACTS
from config.readiness import database_check, kafka_check


def healthz(request):
    """The process is up and answering; nothing else is checked."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks = {"database": database_check(), "kafka": kafka_check()}
    report = {name: {"ok": c.ok, "detail": c.detail, "latency_ms": c.latency_ms} for name, c in checks.items()}
    failing = [name for name, check in checks.items() if not check.ok]
    if not failing:
        return JsonResponse({"status": "ready", "checks": report})
    detail = "; ".join(f"{name}: {checks[name].detail}" for name in failing)
    return problem_json_response(status=503, code="not_ready", title="Not ready", detail=detail,
                                 extra={"failing": failing, "checks": report})


def metrics(request):
    if (refusal := metrics_refusal(request)) is not None:
        return refusal
    body = generate_latest(process_registry()) + generate_latest(FACTS)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def metrics_refusal(request) -> JsonResponse | None:
    """None when the client may read /metrics, else the 401 or 403 that says why not."""
    if client_allowed(request.META.get("REMOTE_ADDR", ""), settings.METRICS_ALLOWED_NETWORKS):
        return None
    scheme, _, raw_key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme != "Bearer" or not raw_key.strip():
        return problem_json_response(
            status=401, code="not_authenticated", title="Authentication required",
            detail="From outside METRICS_ALLOWED_NETWORKS, /metrics needs an admin API key: "
                   "'Authorization: Bearer <key>'.", headers={"WWW-Authenticate": 'Bearer realm="api"'})
    from metering.models import ApiKey

    scope = ApiKey.objects.filter(key_hash=api_key_hash(raw_key.strip()), revoked_at__isnull=True) \
        .values_list("scope", flat=True).first()
    if scope is None:
        return problem_json_response(
            status=401, code="authentication_failed", title="Authentication failed",
            detail="Unknown or revoked API key.", headers={"WWW-Authenticate": 'Bearer realm="api"'})
    if scope != ApiKey.Scope.ADMIN:
        return problem_json_response(
            status=403, code="permission_denied", title="Permission denied",
            detail=f"A key with scope '{scope}' cannot read /metrics; it needs an admin key.")
    return None


def client_allowed(remote_addr: str, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


urlpatterns = [
    path(f"{prefix}{name}", view)
    for prefix in ("", "api/v1/") for name, view in (("healthz", healthz), ("readyz", readyz), ("metrics", metrics))
]


class OperationsEndpointsMiddleware:
    """Answers the operations endpoints from this module's urlpatterns, ahead of host
    validation, sessions and API authentication; passes everything else on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            match = resolve(request.path_info, urlconf=__name__)
        except Resolver404:
            return self.get_response(request)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)
