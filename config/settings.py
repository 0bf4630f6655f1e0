"""Every setting read from the environment, in one place.

Environment variables (defaults suit a developer machine):
DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, CELERY_BROKER_URL, REDIS_URL, SECRET_KEY,
DEBUG, ALLOWED_HOSTS, USAGE_LATENESS_DAYS, USAGE_INGEST_RATE, API_READ_RATE, BALANCE_READ_RATE, BILLING_CHUNK_* (worker loss),
WEBHOOK_ALLOW_PRIVATE_URLS, CELERY_VISIBILITY_TIMEOUT_SECONDS, and for operations
(docs/operations.md) LOG_FORMAT, LOG_LEVEL, METRICS_PORT, METRICS_ADDR, METRICS_ALLOWED_NETWORKS,
PROMETHEUS_MULTIPROC_DIR, READINESS_TIMEOUT_MS, READINESS_KAFKA_CACHE_SECONDS, DATABASE_CONNECT_TIMEOUT.
"""

import hashlib
import ipaddress
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
CHECKOUT_ID = hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8]


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    return env(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def database_from_url(url: str) -> dict:
    """postgres://user:password@host:port/name → Django's DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "tokenledger",
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
        "CONN_MAX_AGE": int(env("DATABASE_CONN_MAX_AGE", "60")),
        "OPTIONS": {"connect_timeout": int(env("DATABASE_CONNECT_TIMEOUT", "5"))},  # bounds /readyz too
        # One test database per checkout, so two checkouts can run their suites at once.
        "TEST": {"NAME": env("TEST_DATABASE_NAME", f"test_tokenledger_{CHECKOUT_ID}")},
    }


SECRET_KEY = env("SECRET_KEY", "dev-only-insecure-secret-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h for h in env("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "metering",
    "billing",
    "infra_inventory",
]

MIDDLEWARE = [
    "config.metrics.http_middleware.RequestMetricsMiddleware",
    "config.operations.OperationsEndpointsMiddleware",  # /healthz, /readyz, /metrics: before host validation
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tokenledger"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/1")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

# --- Kafka ---------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
KAFKA_USAGE_TOPIC = env("KAFKA_USAGE_TOPIC", "usage-events")
KAFKA_USAGE_DLQ_TOPIC = env("KAFKA_USAGE_DLQ_TOPIC", "usage-events-dlq")
KAFKA_CONSUMER_GROUP = env("KAFKA_CONSUMER_GROUP", "metering-ledger")
KAFKA_SESSION_TIMEOUT_MS = int(env("KAFKA_SESSION_TIMEOUT_MS", "10000"))

# --- Metering rules (DESIGN.md §1) ----------------------------------------
USAGE_LATENESS_DAYS = int(env("USAGE_LATENESS_DAYS", "35"))
USAGE_FUTURE_SKEW_SECONDS = 300
USAGE_BATCH_EVENTS_MAX = 1_000
USAGE_BATCH_BYTES_MAX = 5 * 1024 * 1024

# --- Celery --------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", "celery")
# A task whose worker process dies is redelivered by Redis only once this has passed since
# it was handed out. It must exceed the longest countdown/ETA (the webhook backoff is capped
# at 3600 s), or Redis hands out waiting ETA tasks twice; so lost billing chunks are found by
# the watchdog (billing_runs_watchdog_task), not by this timeout.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(env("CELERY_VISIBILITY_TIMEOUT_SECONDS", "7200"))}
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# --- Billing (DESIGN.md §3) --------------------------------------------------
BILLING_GRACE_HOURS = int(env("BILLING_GRACE_HOURS", "24"))  # after period end, before auto-finalization
BILLING_PAYMENT_TERMS_DAYS = int(env("BILLING_PAYMENT_TERMS_DAYS", "30"))
BILLING_CHUNK_CUSTOMERS = int(env("BILLING_CHUNK_CUSTOMERS", "250"))
# Worker loss (docs/operations.md): a chunk with no live attempt, dispatched or begun longer
# ago than this, is sent again by the watchdog; a chunk is tried this many times before its
# run is marked failed; an attempt running longer than the time limit is killed.
BILLING_CHUNK_DEADLINE_SECONDS = int(env("BILLING_CHUNK_DEADLINE_SECONDS", "120"))
BILLING_CHUNK_ATTEMPTS_MAX = int(env("BILLING_CHUNK_ATTEMPTS_MAX", "3"))
BILLING_CHUNK_TIME_LIMIT_SECONDS = int(env("BILLING_CHUNK_TIME_LIMIT_SECONDS", "1800"))
WEBHOOK_RETRY_BASE_SECONDS = float(env("WEBHOOK_RETRY_BASE_SECONDS", "10"))
WEBHOOK_RETRIES_MAX = int(env("WEBHOOK_RETRIES_MAX", "10"))
# Off: endpoints must be https:// to public addresses (checked at registration and again,
# after DNS, at delivery). On only for local development and tests.
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
SELLER = {
    "name": env("SELLER_NAME", "Tokenledger Inference Co."),
    "address": env("SELLER_ADDRESS", "1 Datacenter Way, Ashburn VA 20147, USA"),
    "email": env("SELLER_EMAIL", "billing@tokenledger.example"),
}

# --- REST API --------------------------------------------------------------
USAGE_INGEST_RATE = env("USAGE_INGEST_RATE", "6000/min")
API_READ_RATE = env("API_READ_RATE", "1200/min")
# Gateways ask before serving each request (their client caches a few seconds): a bucket of its own.
BALANCE_READ_RATE = env("BALANCE_READ_RATE", "300000/min")
DATA_UPLOAD_MAX_MEMORY_SIZE = USAGE_BATCH_BYTES_MAX  # any request body: 413 beyond (API.md)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["config.api.ApiKeyAuthentication", "config.api.StaffSessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.HasScope"],
    "DEFAULT_PAGINATION_CLASS": "config.api.NextPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": ["config.api.KeyRateThrottle"],
    "EXCEPTION_HANDLER": "config.api.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "config.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],  # any other body is a 415
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "tokenledger API",
    "DESCRIPTION": "Usage metering and billing for AI inference providers (API.md).",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SERVE_INCLUDE_SCHEMA": False,
    "AUTHENTICATION_WHITELIST": ["config.api.ApiKeyAuthentication"],  # staff sessions are the admin pages' own
}

# --- Operations (docs/operations.md) -------------------------------------------
# The consumer, a Celery worker and beat serve their metrics on METRICS_PORT (unset: not
# served); the web serves /metrics itself. /metrics is open to these networks, to anyone
# else with an admin key; empty: an admin key from everywhere.
METRICS_PORT = int(env("METRICS_PORT", "0")) or None
METRICS_ADDR = env("METRICS_ADDR", "127.0.0.1")
METRICS_ALLOWED_NETWORKS = [
    str(ipaddress.ip_network(n.strip(), strict=False))
    for n in env("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128").split(",") if n.strip()
]
READINESS_TIMEOUT_MS = int(env("READINESS_TIMEOUT_MS", "2000"))
READINESS_KAFKA_CACHE_SECONDS = float(env("READINESS_KAFKA_CACHE_SECONDS", "5"))

LOG_FORMAT = env("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ValueError(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT == "plain"  # json: Celery's lines go through LOGGING too
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   "json": {"()": "config.log_format.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"kafka": {"level": "WARNING"}},
}
