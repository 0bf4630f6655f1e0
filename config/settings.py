"""Every setting read from the environment, in one place.

Environment variables (defaults suit a developer machine):
DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, CELERY_BROKER_URL, REDIS_URL, SECRET_KEY,
DEBUG, ALLOWED_HOSTS, USAGE_LATENESS_DAYS, USAGE_INGEST_RATE.
"""

import hashlib
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
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# --- Billing (DESIGN.md §3) --------------------------------------------------
BILLING_GRACE_HOURS = int(env("BILLING_GRACE_HOURS", "24"))  # after period end, before auto-finalization
BILLING_PAYMENT_TERMS_DAYS = int(env("BILLING_PAYMENT_TERMS_DAYS", "30"))
BILLING_CHUNK_CUSTOMERS = int(env("BILLING_CHUNK_CUSTOMERS", "250"))
WEBHOOK_RETRY_BASE_SECONDS = float(env("WEBHOOK_RETRY_BASE_SECONDS", "10"))
WEBHOOK_RETRIES_MAX = int(env("WEBHOOK_RETRIES_MAX", "10"))
SELLER = {
    "name": env("SELLER_NAME", "Tokenledger Inference Co."),
    "address": env("SELLER_ADDRESS", "1 Datacenter Way, Ashburn VA 20147, USA"),
    "email": env("SELLER_EMAIL", "billing@tokenledger.example"),
}

# --- REST API --------------------------------------------------------------
USAGE_INGEST_RATE = env("USAGE_INGEST_RATE", "6000/min")
API_READ_RATE = env("API_READ_RATE", "1200/min")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["config.api.ApiKeyAuthentication", "config.api.StaffSessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.HasScope"],
    "DEFAULT_PAGINATION_CLASS": "config.api.NextPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": ["config.api.KeyRateThrottle"],
    "EXCEPTION_HANDLER": "config.api.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
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
    "APPEND_COMPONENTS": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "SECURITY": [{"bearer": []}],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"kafka": {"level": "WARNING"}},
}
