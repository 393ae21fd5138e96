"""ChatLima settings: one file, every value read from the environment (chatlima/env.py parses them).

A fresh machine needs nothing set: SQLite, the in-memory channel layer,
inline Celery tasks and the offline model.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from chatlima.env import bad_value, env, envbool, envdecimal, envfloat, envint, envlimit

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DJANGO_DEBUG", True)
_DEV_SECRET = "django-insecure-chatlima-development-only"
SECRET_KEY = env("DJANGO_SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")

ALLOWED_HOSTS = [h.strip() for h in env("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("DJANGO_CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "accounts",
    "usage",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatlima.middleware.BadInputMiddleware",  # NUL in path or query, too large or too deep bodies: JSON 4xx
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chatlima.db.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "chatlima.urls"
ASGI_APPLICATION = "chatlima.asgi.application"
WSGI_APPLICATION = None

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
                "usage.context_processors.budget_alerts",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the async server's threads share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
# PostgreSQL: each process takes its connections from one bounded pool (Django's psycopg 3 pool), so a
# burst waits for a free connection instead of opening one per request (a stock server allows 100).
# Processes x CHATLIMA_DB_POOL_SIZE must stay under max_connections (README, Configuration); a wait
# longer than CHATLIMA_DB_POOL_TIMEOUT seconds answers 503 SERVICE_UNAVAILABLE (chatlima/db.py).
# 0 = no pool: a connection per request, kept DATABASE_CONN_MAX_AGE seconds.
CHATLIMA_DB_POOL_SIZE = envint("CHATLIMA_DB_POOL_SIZE", 10)
CHATLIMA_DB_POOL_TIMEOUT = envfloat("CHATLIMA_DB_POOL_TIMEOUT", 10)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and CHATLIMA_DB_POOL_SIZE > 0:
    # The pool keeps the connections (Django refuses CONN_MAX_AGE with it) and checks each before use.
    DATABASES["default"].update(CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=True)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, CHATLIMA_DB_POOL_SIZE),
        "max_size": CHATLIMA_DB_POOL_SIZE,
        "timeout": CHATLIMA_DB_POOL_TIMEOUT,
        "max_idle": 60.0,  # connections above min_size close after a minute unused
        "name": "chatlima",
    }

# PostgreSQL prepares a statement a connection has run CHATLIMA_DB_PREPARE_THRESHOLD times (psycopg's
# prepared statements, which need its server-side binding): an exchange's twenty-odd statements are
# the same texts every time, and parsing and planning them again was a third of the database's own
# CPU (bench/prepare_settle.py: 3.4-5.3 -> 2.4-2.6 ms per exchange). 0 = never (client-side
# binding, Django's default), as behind PgBouncer in transaction mode. Restart the servers after a
# migration (as a deploy does): a statement prepared before it may fail on a table it changed.
CHATLIMA_DB_PREPARE_THRESHOLD = envint("CHATLIMA_DB_PREPARE_THRESHOLD", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and CHATLIMA_DB_PREPARE_THRESHOLD > 0:
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=CHATLIMA_DB_PREPARE_THRESHOLD)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
CHATLIMA_SERVE_STATIC = envbool("CHATLIMA_SERVE_STATIC", True)

# Every this many seconds each server process checks its open sockets' tokens and sessions in one
# read and closes with 4401 those revoked or logged out (accounts/ws_auth.py); 0 switches it off.
CHATLIMA_WS_AUTH_CHECK_SECONDS = envfloat("CHATLIMA_WS_AUTH_CHECK_SECONDS", 5)

# Redis, when configured, carries the channel layer and the Celery broker.
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env("CHANNEL_LAYER_PREFIX", "chatlima")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The shared cache: DRF throttles, login lockouts, the rollup debounce. Every server process and
# machine must see the same counts, so never process memory: Django's Redis backend with REDIS_URL,
# else Django's database cache (its table comes with `migrate`, accounts/migrations/0003). Keys are
# prefixed per database, so deployments and test runs that share one Redis never share counts.
# "figures" only saves time (recent-usage figures): Redis where there is one; without it nothing is
# cheaper than the query it would save, so nothing is cached.
CACHE_KEY_PREFIX = env("CHATLIMA_CACHE_PREFIX") or "chatlima-" + __import__("hashlib").sha256(
    "|".join(str(DATABASES["default"].get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME")).encode()
).hexdigest()[:12]
# What every Redis cache is given (tests/ops/test_shared_cache.py builds its caches with them too).
REDIS_CACHE_OPTIONS = {"socket_connect_timeout": 5, "socket_timeout": 5,
                       "pool_class": "chatlima.cache.SharedConnectionPool"}
if REDIS_URL:
    _SHARED_CACHE = {
        "BACKEND": "chatlima.cache.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": CACHE_KEY_PREFIX,
        "OPTIONS": dict(REDIS_CACHE_OPTIONS),
    }
    CACHES = {"default": _SHARED_CACHE, "figures": dict(_SHARED_CACHE)}
else:
    CACHES = {
        "default": {
            "BACKEND": "chatlima.cache.DatabaseCache", "LOCATION": "chatlima_cache", "KEY_PREFIX": CACHE_KEY_PREFIX,
            # Past this many rows Django deletes expired ones, then a third of the rest: room for every
            # live throttle and lockout count of a deployment without Redis.
            "OPTIONS": {"MAX_ENTRIES": 50_000},
        },
        "figures": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }

# Logins (accounts/login_throttle.py): failures counted per account (its canonical username, from any
# address) and per client address (any usernames); past either limit within the lockout window,
# that account or address is refused, right password or not, for CHATLIMA_LOGIN_LOCKOUT_SECONDS.
CHATLIMA_LOGIN_MAX_FAILURES = envint("CHATLIMA_LOGIN_MAX_FAILURES", 10)
CHATLIMA_LOGIN_ADDRESS_MAX_FAILURES = envint("CHATLIMA_LOGIN_ADDRESS_MAX_FAILURES", 20)
CHATLIMA_LOGIN_LOCKOUT_SECONDS = envint("CHATLIMA_LOGIN_LOCKOUT_SECONDS", 900)
# The client address is REMOTE_ADDR: behind a proxy, the proxy must set it (daphne --proxy-headers with
# a proxy that overwrites X-Forwarded-For). X-Forwarded-For is trusted only when this says how many
# proxies append to it (then its Nth address from the right is the client), for DRF's throttles too.
CHATLIMA_TRUSTED_PROXIES = envint("CHATLIMA_TRUSTED_PROXIES", 0)
AUTHENTICATION_BACKENDS = ["accounts.backends.LockoutModelBackend"]

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_IGNORE_RESULT = True
# With a broker, the rollups of users whose exchanges settled are refreshed once per this many seconds
# (beat's usage.refresh_active_rollups); without one, inline after every exchange.
CHATLIMA_ROLLUP_REFRESH_SECONDS = envint("CHATLIMA_ROLLUP_REFRESH_SECONDS", 30)
CELERY_BEAT_SCHEDULE = {
    # Usage rollups: the day just ended shortly after midnight UTC, and today's every hour.
    "usage-rollup-after-midnight": {"task": "usage.rollup_recent", "schedule": crontab(minute=5, hour=0)},
    "usage-rollup-hourly": {"task": "usage.rollup_recent", "schedule": crontab(minute=20)},
    # Today's and yesterday's rollups of the users whose exchanges settled in the last two windows.
    "usage-rollup-active": {"task": "usage.refresh_active_rollups", "schedule": float(CHATLIMA_ROLLUP_REFRESH_SECONDS)},
    # Raw usage rows past CHATLIMA_USAGE_RETENTION_DAYS: rolled up, then deleted.
    "usage-retention": {"task": "usage.purge_old_usage_logs", "schedule": crontab(minute=40, hour=1)},
    # The exchange pipeline: holds past their TTL, and exchanges whose heartbeat stopped.
    "expire-reservations": {"task": "chat.tasks.expire_reservations", "schedule": 60.0},
    "settle-stale-exchanges": {"task": "chat.tasks.settle_stale_exchanges", "schedule": 120.0},
    # The model catalogue and the providers' own prices, from every configured provider, daily.
    "refresh-models": {"task": "chat.tasks.refresh_models", "schedule": crontab(minute=15, hour=3)},
    # API tokens past their expiry (refused when used; a request no longer sweeps the user's others).
    "delete-expired-tokens": {"task": "accounts.delete_expired_tokens", "schedule": crontab(minute=50, hour=2)},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The API speaks JSON only (API.md): a form or multipart body is a 415, as the schema says.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "chatlima.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env("CHATLIMA_USER_THROTTLE", "600/min"),
        "anon": env("CHATLIMA_ANON_THROTTLE", "60/min"),
        "login": env("CHATLIMA_LOGIN_THROTTLE", "10/min"),
        "sync": env("CHATLIMA_SYNC_THROTTLE", "120/min"),
    },
    # Client addresses for DRF's throttles: REMOTE_ADDR unless CHATLIMA_TRUSTED_PROXIES says otherwise.
    "NUM_PROXIES": CHATLIMA_TRUSTED_PROXIES,
}

KNOX_TOKEN_MODEL = "knox.AuthToken"  # knox's model is swappable; accounts.ApiToken names it
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(days=envint("CHATLIMA_TOKEN_TTL_DAYS", 90)),
    "TOKEN_LIMIT_PER_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ChatLima API",
    "DESCRIPTION": "Chat with LLMs and see where every token goes.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation in the OpenAPI schema lists the contract's error answers (chat/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chat.serializers.describe_exchange_doors",
        "chat.serializers.add_error_responses",
    ],
}


def openai_endpoints(names: str) -> dict[str, dict]:
    """More OpenAI-compatible endpoints (Ollama, vLLM, LM Studio, llama.cpp, any proxy), each a provider.

    CHATLIMA_OPENAI_ENDPOINTS=ollama,vllm names them; for each, CHATLIMA_ENDPOINT_<NAME>_BASE_URL
    (required), _API_KEY (optional: local servers need none), _FREE (its models cost nothing unless a
    price says otherwise) and _LABEL (its name on pages). A name is lower case, and none of the
    built-in providers'.
    """
    endpoints: dict[str, dict] = {}
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name) or name in BUILTIN_PROVIDERS or name in endpoints:
            raise bad_value("CHATLIMA_OPENAI_ENDPOINTS", name, "a new lower-case endpoint name")
        prefix = f"CHATLIMA_ENDPOINT_{name.upper().replace('-', '_')}_"
        base_url = env(prefix + "BASE_URL")
        if not base_url:
            raise ImproperlyConfigured(f"{prefix}BASE_URL must be set for the endpoint {name!r}")
        endpoints[name] = {
            "api_key": env(prefix + "API_KEY"), "base_url": base_url,
            "free": envbool(prefix + "FREE", False), "label": env(prefix + "LABEL", name),
        }
    return endpoints


# Providers: a model's provider is available when its key is set (an extra endpoint: its base URL).
# The catalogue of each is its own list of models (`refresh_models`); prices: usage/pricing.py.
BUILTIN_PROVIDERS = ("offline", "openai", "openrouter", "gemini")
PROVIDERS = {
    "openai": {"api_key": env("OPENAI_API_KEY"), "base_url": env("OPENAI_BASE_URL") or None,
               "free": envbool("OPENAI_FREE", False)},
    "openrouter": {
        "api_key": env("OPENROUTER_API_KEY"),
        "base_url": env("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
    },
    "gemini": {"api_key": env("GEMINI_API_KEY"), "base_url": env("GEMINI_BASE_URL") or None},
    **openai_endpoints(env("CHATLIMA_OPENAI_ENDPOINTS")),
}
# Seconds refresh_models waits for one provider's list of models.
CHATLIMA_CATALOGUE_TIMEOUT_SECONDS = envfloat("CHATLIMA_CATALOGUE_TIMEOUT_SECONDS", 30)
PROVIDER_TIMEOUT_SECONDS = envfloat("CHATLIMA_PROVIDER_TIMEOUT_SECONDS", 60)
PROVIDER_MAX_RETRIES = envint("CHATLIMA_PROVIDER_MAX_RETRIES", 3)
# Backoff before retry n (0-based): base * 2**n with full jitter, capped; a Retry-After header wins.
PROVIDER_RETRY_BASE_SECONDS = envfloat("CHATLIMA_PROVIDER_RETRY_BASE_SECONDS", 0.5)
PROVIDER_RETRY_MAX_SECONDS = envfloat("CHATLIMA_PROVIDER_RETRY_MAX_SECONDS", 20)

CHATLIMA_DEFAULT_MODEL = env("CHATLIMA_DEFAULT_MODEL", "offline-demo")
CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT = envlimit("CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT", 1_000_000)
CHATLIMA_DEFAULT_MONTHLY_COST_LIMIT = envdecimal("CHATLIMA_DEFAULT_MONTHLY_COST_LIMIT", None)
CHATLIMA_DEFAULT_BUDGET_PERIOD = env("CHATLIMA_DEFAULT_BUDGET_PERIOD", "monthly")
CHATLIMA_DEFAULT_TIMEZONE = env("CHATLIMA_DEFAULT_TIMEZONE", "UTC")
CHATLIMA_OFFLINE_CHUNK_DELAY_MS = envint("CHATLIMA_OFFLINE_CHUNK_DELAY_MS", 30)
CHATLIMA_MAX_MESSAGE_CHARS = 32_000
CHATLIMA_DEFAULT_MAX_TOKENS = envint("CHATLIMA_DEFAULT_MAX_TOKENS", 2048)
# The least answer worth sending: a budget that cannot cover `max_tokens` lowers it, down to this.
CHATLIMA_MIN_OUTPUT_TOKENS = envint("CHATLIMA_MIN_OUTPUT_TOKENS", 256)
CHATLIMA_CONTEXT_TOKEN_BUDGET = envint("CHATLIMA_CONTEXT_TOKEN_BUDGET", 8000)
CHATLIMA_USAGE_RETENTION_DAYS = envlimit("CHATLIMA_USAGE_RETENTION_DAYS", None)
CHATLIMA_JSON_LOGS = envbool("CHATLIMA_JSON_LOGS", False)

EMAIL_BACKEND = env("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", "chatlima@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "chatlima.logging.JsonLinesFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if CHATLIMA_JSON_LOGS else "plain"},
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

# The exchange pipeline (chat/exchange/).
# Stream deltas are batched into one frame per interval so a slow client cannot pile up frames; 0 = every delta.
CHATLIMA_STREAM_BATCH_MS = envint("CHATLIMA_STREAM_BATCH_MS", 50)
# Past this many live streams in one process, frames span proportionally more intervals (at most 8; 0 = never).
CHATLIMA_STREAM_BUSY_STREAMS = envint("CHATLIMA_STREAM_BUSY_STREAMS", 200)
# Load provider SDKs and price data when a serving process starts, not on its first exchanges (chatlima/asgi.py).
CHATLIMA_WARM_UP = envbool("CHATLIMA_WARM_UP", True)
# Streaming answers' partial text is saved this often (one transaction per process for all of them,
# chat/partials.py), so a kill loses at most about this much; each save is the exchanges' heartbeat.
CHATLIMA_PARTIAL_SAVE_SECONDS = envfloat("CHATLIMA_PARTIAL_SAVE_SECONDS", 1)
# A pending exchange whose heartbeat is older than this belongs to a server that is gone.
CHATLIMA_HEARTBEAT_STALE_SECONDS = envfloat("CHATLIMA_HEARTBEAT_STALE_SECONDS", 10)
CHATLIMA_RESERVATION_TTL_SECONDS = envint("CHATLIMA_RESERVATION_TTL_SECONDS", max(300, int(2 * PROVIDER_TIMEOUT_SECONDS)))
# SQLite takes one writer at a time: its database work runs on one thread; PostgreSQL gets a thread pool.
CHATLIMA_DB_THREAD_SENSITIVE = envbool("CHATLIMA_DB_THREAD_SENSITIVE", DATABASES["default"]["ENGINE"].endswith("sqlite3"))

# Mobile sync and the REST API (chat/sync/). A push body holds at most this many items; bigger
# histories are pushed in several bodies. The body size limit leaves room for a full push.
CHATLIMA_SYNC_MAX_CONVERSATIONS = envint("CHATLIMA_SYNC_MAX_CONVERSATIONS", 1000)
CHATLIMA_SYNC_MAX_MESSAGES = envint("CHATLIMA_SYNC_MAX_MESSAGES", 20000)
CHATLIMA_SYNC_MAX_DELETED = envint("CHATLIMA_SYNC_MAX_DELETED", 1000)
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("CHATLIMA_MAX_BODY_BYTES", 32 * 1024 * 1024)

# Attachments: files and URLs a conversation carries as context (chat/attachments/). A file over
# CHATLIMA_ATTACHMENT_MAX_BYTES, a fetched page over CHATLIMA_FETCH_MAX_BYTES, or attachments
# whose text would carry more than CHATLIMA_ATTACHMENT_MAX_TOKENS in one conversation: 413; more
# than CHATLIMA_ATTACHMENTS_PER_CONVERSATION: 400. The URL fetcher refuses private, loopback,
# link-local and other non-public addresses unless CHATLIMA_FETCH_ALLOW_PRIVATE is on (tests, a
# deployment that means to read its own network).
CHATLIMA_ATTACHMENT_MAX_BYTES = envint("CHATLIMA_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
CHATLIMA_ATTACHMENTS_PER_CONVERSATION = envint("CHATLIMA_ATTACHMENTS_PER_CONVERSATION", 20)
CHATLIMA_ATTACHMENT_MAX_TOKENS = envint("CHATLIMA_ATTACHMENT_MAX_TOKENS", 100_000)
CHATLIMA_FETCH_TIMEOUT_SECONDS = envfloat("CHATLIMA_FETCH_TIMEOUT_SECONDS", 10)
CHATLIMA_FETCH_MAX_BYTES = envint("CHATLIMA_FETCH_MAX_BYTES", 5 * 1024 * 1024)
CHATLIMA_FETCH_ALLOW_PRIVATE = envbool("CHATLIMA_FETCH_ALLOW_PRIVATE", False)
CHATLIMA_FETCH_MAX_REDIRECTS = envint("CHATLIMA_FETCH_MAX_REDIRECTS", 5)
# Who turns a host name into addresses for the fetcher (a dotted path; tests put a stub here).
CHATLIMA_FETCH_RESOLVER = "chat.attachments.fetch.system_resolver"
