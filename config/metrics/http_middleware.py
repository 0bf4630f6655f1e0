"""Counts and times every HTTP request the web answers, by URL route (the pattern, so
ids don't multiply the series), method and status."""

import time

from config.metrics.counters import HTTP_REQUESTS, HTTP_SECONDS

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # any other counts as "other"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        return response
