"""Django settings. Every value comes from the environment (see ide/config.py),
with defaults that let ``make run`` work on a fresh machine without configuration."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ide.config import env_bool, env_bytes, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SANDBOX_IDE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=600
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; the timeout rides out short locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool (psycopg_pool), not persistent connections: under ASGI every request runs
    # its database work in a thread of its own, and CONN_MAX_AGE keeps one connection
    # per such thread open until it is too old. The pool hands each request a
    # connection for as long as it runs, caps how many one process opens (a request
    # beyond waits up to DATABASE_POOL_TIMEOUT), and Django requires CONN_MAX_AGE=0 with it.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_SIZE", 20, minimum=1),
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 30.0, minimum=1.0),
    }
SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/ (only
    with SQLite: a shared database means several servers, which must share the key)."""
    key = env_str("SECRET_KEY", "")
    if key:
        return key
    if not SQLITE:
        raise ImproperlyConfigured(
            "Setting SECRET_KEY is required when DATABASE_URL is not SQLite (every server "
            "process on a shared database must sign with the same key): set it to a long "
            "random string, e.g. the output of `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'`."
        )
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)

PREVIEW_DOMAIN = env_str("PREVIEW_DOMAIN", "preview.localhost").lower().strip(".")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "sandboxes",
    "sandboxes.classroom",
    "ide",
]

MIDDLEWARE = [
    "sandboxes.api.errors.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out login (see "accounts" below).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "ide.urls"
ASGI_APPLICATION = "ide.asgi.application"

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
                "ide.views.signup_context",
            ],
        },
    },
]

REDIS_URL = env_str("REDIS_URL", "")
CHANNEL_LAYERS = (
    {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    if REDIS_URL
    else {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes counts failed logins first (see "accounts" below).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "SAMEORIGIN"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "docker": {"level": "WARNING"}},
}

# --------------------------------------------------------------------- sandboxes
# The backend is chosen by dotted path, as Channels chooses its layer.
SANDBOX_BACKEND = env_str("SANDBOX_BACKEND", "sandboxes.backends.docker.DockerBackend")
# Empty means "sandbox-ide:<hash of container/>", built by `manage.py build_sandbox_image`.
SANDBOX_IMAGE = env_str("SANDBOX_IMAGE", "")
SANDBOX_BASE_IMAGE = env_str("SANDBOX_BASE_IMAGE", "sandbox-ide-base:bookworm")
# Host directory holding one agent-socket directory per sandbox.
SANDBOX_RUN_DIR = Path(env_str("SANDBOX_RUN_DIR", str(VAR_DIR / "run")))
# Prefix of container, volume and label names: tests use their own to clean up.
SANDBOX_NAME_PREFIX = env_str("SANDBOX_NAME_PREFIX", "sandbox-ide")


def _deployment_id() -> str:
    """Which server installation owns a container (a label): the orphan sweep of one
    installation must never touch another's sandboxes on the same engine."""
    value = env_str("SANDBOX_DEPLOYMENT", "")
    if value:
        return value
    path = VAR_DIR / "deployment_id"
    if not path.exists():
        path.write_text(secrets.token_hex(6))
    return path.read_text().strip()


SANDBOX_DEPLOYMENT = _deployment_id()
SANDBOX_MEMORY_LIMIT = env_bytes("SANDBOX_MEMORY_LIMIT", "1g")
SANDBOX_CPU_LIMIT = env_float("SANDBOX_CPU_LIMIT", 1.0, minimum=0.01)
SANDBOX_PIDS_LIMIT = env_int("SANDBOX_PIDS_LIMIT", 512, minimum=16)
SANDBOX_LOG_MAX_SIZE = env_str("SANDBOX_LOG_MAX_SIZE", "10m")
SANDBOX_LOG_MAX_FILE = env_int("SANDBOX_LOG_MAX_FILE", 2, minimum=1)
SANDBOX_RUNTIME = env_str("SANDBOX_RUNTIME", "")  # e.g. "runsc" for gVisor
# How the server reaches each agent: "unix", a socket in SANDBOX_RUN_DIR; "tcp", a
# port the engine publishes on 127.0.0.1 only (every connection challenged, see
# container/agent/protocol.py), the transport a sandbox on another host needs.
SANDBOX_AGENT_TRANSPORT = env_str("SANDBOX_AGENT_TRANSPORT", "unix").strip().lower()
if SANDBOX_AGENT_TRANSPORT not in {"unix", "tcp"}:
    raise ImproperlyConfigured(
        f"Setting SANDBOX_AGENT_TRANSPORT={SANDBOX_AGENT_TRANSPORT!r} must be unix or tcp."
    )
SANDBOX_DEFAULT_SLEEP_AFTER = env_int("SANDBOX_DEFAULT_SLEEP_AFTER", 600)
SANDBOX_START_TIMEOUT = env_float("SANDBOX_START_TIMEOUT", 30.0, minimum=1.0)
# Buffered (non-streaming) exec responses keep at most this much of each stream.
EXEC_OUTPUT_LIMIT = env_bytes("EXEC_OUTPUT_LIMIT", "16m")
# All buffered exec and code-run output one account's calls may hold at once in a
# server process, and all calls together; beyond, output is dropped (truncated: true).
EXEC_BUFFER_PER_USER = env_bytes("EXEC_BUFFER_PER_USER", "64m")
EXEC_BUFFER_TOTAL = env_bytes("EXEC_BUFFER_TOTAL", "256m")
EXEC_MAX_TIMEOUT = env_float("EXEC_MAX_TIMEOUT", 24 * 3600.0, minimum=1.0)
# JSON request bodies above this are refused with 413.
API_MAX_JSON_BODY = env_bytes("API_MAX_JSON_BODY", "4m")
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_JSON_BODY

# --------------------------------------------------------------------- preview URLs
# The IDE's own origin, where previews that are not public send the browser to check
# the login and where short share links live, e.g. "https://ide.example.com".
# Empty: http://localhost:<the request's port>.
IDE_BASE_URL = env_str("IDE_BASE_URL", "").rstrip("/")
# How long the cookie that opens a private preview lasts (seconds).
PREVIEW_COOKIE_MAX_AGE = env_int("PREVIEW_COOKIE_MAX_AGE", 12 * 3600, minimum=60)

# --------------------------------------------------------------------- terminals
# A terminal with no client attached for this long (seconds) ends; clients may ask
# for less with ?idle_timeout=.
TERMINAL_IDLE_TIMEOUT = env_float("TERMINAL_IDLE_TIMEOUT", 24 * 3600.0, minimum=1.0)
# Each terminal's screen is kept for clients that (re)attach: the most output parsed
# into it at once (a longer burst is rebuilt from its end); 0 keeps none.
TERMINAL_REPLAY_BYTES = env_bytes("TERMINAL_REPLAY_BYTES", "64k")

# --------------------------------------------------------------------- files
# Raw file uploads (PUT files/content, multipart upload) bypass API_MAX_JSON_BODY and
# are streamed to the sandbox; one file larger than this is refused with 413.
FILES_MAX_UPLOAD = env_bytes("FILES_MAX_UPLOAD", "2g")

# --------------------------------------------------------------------- processes
# Output of each background process stream kept in the agent's memory (the tail);
# all of it is also appended to files in the sandbox (/tmp/.sandbox-processes).
PROCESS_LOG_BUFFER = env_bytes("PROCESS_LOG_BUFFER", "1m")

# ------------------------------------------------------------------ lifecycle
# Every server process runs the reaper loop; one at a time (a lease) runs passes.
SANDBOX_REAPER = env_bool("SANDBOX_REAPER", True)
# Without REDIS_URL a second server process on the same database is refused; this lets
# one in anyway (tests that start a second server with other settings beside the
# first), each process then holding locks and limits for itself only.
ALLOW_UNCOORDINATED_SERVERS = env_bool("ALLOW_UNCOORDINATED_SERVERS", False)
SANDBOX_REAP_INTERVAL = env_float("SANDBOX_REAP_INTERVAL", 10.0, minimum=0.1)
# A sandbox idle for sleep_after seconds is paused; after this many more, stopped.
SANDBOX_STOP_AFTER = env_int("SANDBOX_STOP_AFTER", 3600)
# A labelled container with no database row is removed once it is this old.
SANDBOX_ORPHAN_GRACE = env_int("SANDBOX_ORPHAN_GRACE", 600)
SANDBOX_BLOCK_PRIVATE_NETWORKS = env_bool("SANDBOX_BLOCK_PRIVATE_NETWORKS", True)
# The egress proxy for sandboxes with an allow-list (on the sandboxes' gateway), and
# fixed answers to its name lookups ("name=address,...": tests, air-gapped sites).
SANDBOX_EGRESS_PROXY_PORT = env_int("SANDBOX_EGRESS_PROXY_PORT", 3128, minimum=1)
SANDBOX_EGRESS_HOSTS = env_str("SANDBOX_EGRESS_HOSTS", "")
SANDBOX_MAX_PER_USER = env_int("SANDBOX_MAX_PER_USER", 20, minimum=1)
SANDBOX_MAX_EXECS = env_int("SANDBOX_MAX_EXECS", 32, minimum=1)
TERMINAL_MAX_PER_SANDBOX = env_int("TERMINAL_MAX_PER_SANDBOX", 16, minimum=1)
# Disk a sandbox may fill (/workspace, its home and temporary directories), kept by
# its agent; a template may ask for less (limits.disk_mb). "0": no quota.
SANDBOX_DISK_QUOTA = env_bytes("SANDBOX_DISK_QUOTA", "5g")
# What one user's snapshots (their workspaces and installed packages) may occupy
# together; a snapshot past it is refused with 429. "0": no quota.
SANDBOX_SNAPSHOT_QUOTA = env_bytes("SANDBOX_SNAPSHOT_QUOTA", "20g")

# ------------------------------------------------------------------ classroom
# Ready sandboxes kept per template (a template may set its own number), so a class
# joining at once does not wait for containers to start.
CLASSROOM_WARM_POOL = env_int("CLASSROOM_WARM_POOL", 3)
# Pooled sandboxes count against their template's owner: the warm_pool sizes of one
# owner's templates add up to at most this (asking for more answers 429) ...
WARM_POOL_MAX_PER_USER = env_int("WARM_POOL_MAX_PER_USER", 20)
# ... and the server keeps at most this many pooled sandboxes in all.
WARM_POOL_MAX_TOTAL = env_int("WARM_POOL_MAX_TOTAL", 50)
# Invite links expire after this many days unless the teacher picks otherwise.
CLASSROOM_INVITE_DAYS = env_int("CLASSROOM_INVITE_DAYS", 14, minimum=1)
# The server itself fetches starter repositories. By default only http(s)/git/ssh
# URLs of public hosts; tests and single-user installs may allow file:// and
# loopback/private hosts.
TEMPLATE_REPO_ALLOW_LOCAL = env_bool("TEMPLATE_REPO_ALLOW_LOCAL", False)
# Starter repositories, uploaded files and reset archives live here.
CLASSROOM_DIR = VAR_DIR / "classroom"
# Images a template may name besides the default sandbox image (built from
# container/, so they carry the agent), comma-separated.
TEMPLATE_IMAGES = env_list("TEMPLATE_IMAGES", [])
# A starter repository (its git objects) larger than this is refused; 0: no limit.
TEMPLATE_REPO_MAX_SIZE = env_bytes("TEMPLATE_REPO_MAX_SIZE", "512m")
# A tutorial step's verify script is stopped after this many seconds (a failed
# check), and at most this much of its output is kept and shown.
TUTORIAL_VERIFY_TIMEOUT = env_float("TUTORIAL_VERIFY_TIMEOUT", 30.0, minimum=1.0)
TUTORIAL_OUTPUT_LIMIT = env_bytes("TUTORIAL_OUTPUT_LIMIT", "16k")
# Background scripts (run when a step opens) are stopped after this many seconds.
TUTORIAL_BACKGROUND_TIMEOUT = env_float("TUTORIAL_BACKGROUND_TIMEOUT", 600.0, minimum=1.0)
# The most a template's Dockerfile may add to the sandbox image; 0: no limit.
TEMPLATE_IMAGE_MAX_GROWTH = env_bytes("TEMPLATE_IMAGE_MAX_GROWTH", "4g")
# Seconds a template image build may take before it is stopped.
TEMPLATE_BUILD_TIMEOUT = env_int("TEMPLATE_BUILD_TIMEOUT", 1800, minimum=1)

# ------------------------------------------------------------------ accounts (security)
# Who may create an account in the browser: "open" (anyone), "invite" (only through
# a course invite link), "closed" (nobody; admins and `manage.py create_api_token
# --create-user` still make users).
SIGNUP = env_str("SIGNUP", "open").strip().lower()
if SIGNUP not in ("open", "invite", "closed"):
    raise ImproperlyConfigured(f"Setting SIGNUP={SIGNUP!r} must be open, invite or closed.")
# Failed logins (browser and admin; API tokens are not logins) are counted per
# username and client address by django-axes: after LOGIN_FAILURE_LIMIT failures that
# pair is locked out for LOGIN_LOCKOUT_MINUTES; a successful login resets the count.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_LOCKOUT_MINUTES", 15.0, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "ide.views.locked_out"
AXES_VERBOSE = False
# Served over HTTPS (usually behind a TLS-terminating proxy): session and CSRF
# cookies are Secure and HSTS is sent on HTTPS responses for HSTS_SECONDS.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 365 * 24 * 3600, minimum=0) if HTTPS else 0
# Behind a proxy that sets X-Forwarded-Proto (and strips it from clients): trust it,
# so a request that came over HTTPS is known as such (HSTS, CSRF origin checks).
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
