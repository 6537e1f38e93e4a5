"""Django settings for the ariacluster dispatcher.

One file, driven by `config/dispatcher.json` (path in ARIACLUSTER_CONFIG) and environment
variables, which win over the file. A fresh clone runs with no configuration at all: SQLite in
`data/dispatcher.db` and the in-memory channel layer.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import dj_database_url

from ariacluster.config import ConfigError, load_config
from worker_agent.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


_config_path = os.environ.get("ARIACLUSTER_CONFIG")
if _config_path is None and (BASE_DIR / "config" / "dispatcher.json").exists():
    _config_path = str(BASE_DIR / "config" / "dispatcher.json")
try:
    ARIACLUSTER = load_config(_config_path)
except ConfigError as _exc:
    sys.stderr.write(f"ariacluster: invalid configuration: {_exc}\n")
    raise SystemExit(2) from None

DATA_DIR = Path(os.environ.get("ARIACLUSTER_DATA_DIR", BASE_DIR / "data"))
DEBUG = envbool("DEBUG", False)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else a random one kept in a 0600 file under data/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = DATA_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


# The production profile: HTTPS-only cookies and redirects, HSTS, and a SECRET_KEY that must come
# from the environment. `manage.py check --deploy` is clean with it (see docs/operations.md).
PRODUCTION = envbool("ARIACLUSTER_PRODUCTION", False)
if PRODUCTION and not os.environ.get("SECRET_KEY"):
    sys.stderr.write("ariacluster: ARIACLUSTER_PRODUCTION needs SECRET_KEY in the environment\n")
    raise SystemExit(2)
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "channels",
    "dispatcher",
    "workers_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "ariacluster.http.RequestSizeLimitMiddleware",
    "ariacluster.http.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "ariacluster.urls"
ASGI_APPLICATION = "ariacluster.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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


def _databases() -> dict[str, dict[str, object]]:
    url = os.environ.get("DATABASE_URL") or ARIACLUSTER.database.url
    db_type = ARIACLUSTER.database.type
    if os.environ.get("DATABASE_URL") or db_type == "postgresql":
        # Under ASGI each request may run in its own thread, so persistent per-thread connections
        # pile up (Django's docs advise against CONN_MAX_AGE with ASGI). A bounded psycopg pool
        # per process instead: a handful of connections, reused.
        config: dict[str, object] = dict(dj_database_url.parse(url, conn_max_age=0))
        pool_size = int(os.environ.get("ARIACLUSTER_DB_POOL_SIZE", "8"))
        if pool_size > 0:
            pg_options = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
            pg_options["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 20}
            config["OPTIONS"] = pg_options
        return {"default": config}
    if db_type == "memory":
        # "memory" keeps the original's meaning (gone when the process stops) with SQLite's
        # normal locking: a file in a private temporary folder, deleted at exit. Shared-cache
        # in-memory SQLite fails concurrent requests with "database table is locked".
        folder = Path(tempfile.mkdtemp(prefix="ariacluster-memory-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / "dispatcher.db"
    else:
        path = Path(ARIACLUSTER.database.path)
    if not path.is_absolute():
        path = BASE_DIR / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            # A SQLite connection is a file handle, not a server slot: keep it per thread
            # instead of opening one (and re-running the PRAGMAs) for every request.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                # One writer at a time, taken at BEGIN: placement cannot race, and no
                # "database is locked" on a read-then-write upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds the API rate-limit counters: shared through Redis when several dispatcher
# processes run, per process otherwise.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "ariacluster",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
DATA_UPLOAD_MAX_MEMORY_SIZE = ARIACLUSTER.security.max_request_bytes
FILE_UPLOAD_MAX_MEMORY_SIZE = ARIACLUSTER.security.max_request_bytes

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "ariacluster.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["ariacluster.auth.HasApiScope"],
    "DEFAULT_PAGINATION_CLASS": "ariacluster.http.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "ariacluster.http.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Per key (or login) limits from `security.rate_limits`; agent endpoints are not throttled.
    "DEFAULT_THROTTLE_CLASSES": [
        "ariacluster.throttling.ReadRateThrottle",
        "ariacluster.throttling.WriteRateThrottle",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ariacluster API",
    "DESCRIPTION": "Queue downloads on a cluster of aria2c workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["ariacluster.schema.documented_paths_only"],
}

# stdout, plus a rotating file when ARIACLUSTER_LOG_FILE is set (e.g. logs/dispatcher.log,
# relative to the project folder); ARIACLUSTER_LOG_FORMAT=json for one JSON object per line.
# Secrets are redacted by the same filter the agent uses (worker_agent.logs).
_log_file = os.environ.get("ARIACLUSTER_LOG_FILE", "")
try:
    LOGGING = logging_config(
        ARIACLUSTER.log_level,
        log_file=(BASE_DIR / _log_file) if _log_file else None,
        log_format=os.environ.get("ARIACLUSTER_LOG_FORMAT", "plain") or "plain",
    )
except ValueError as _exc:
    sys.stderr.write(f"ariacluster: ARIACLUSTER_LOG_FORMAT: {_exc}\n")
    raise SystemExit(2) from None
LOGGING["loggers"] = {"django.db.backends": {"level": "WARNING"}}

# Maintenance loop (lease expiry, retries, placement sweep) runs inside each ASGI process.
MAINTENANCE_INTERVAL = float(os.environ.get("ARIACLUSTER_MAINTENANCE_INTERVAL", "1.0"))
MAINTENANCE_ENABLED = envbool("ARIACLUSTER_MAINTENANCE", True)

# A bearer token that may read /metrics (besides admin-scope API keys); empty: keys only.
METRICS_TOKEN = os.environ.get("ARIACLUSTER_METRICS_TOKEN", "")

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Behind a TLS-terminating proxy: trust its X-Forwarded-Proto and let it redirect.
    if envbool("ARIACLUSTER_BEHIND_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("ARIACLUSTER_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("ARIACLUSTER_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("ARIACLUSTER_HSTS_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = envbool("ARIACLUSTER_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a one-way commitment for the whole domain: the operator opts in.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
