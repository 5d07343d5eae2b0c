"""Settings for kebaweb, read from the environment.

The defaults suit the embedded case (one machine, SQLite, no Redis); every
variable is listed in the README. A bad value stops start-up with a message
naming the variable.
"""

import ipaddress
import logging
import os
import secrets
import stat
import zoneinfo
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: use 1 (on) or 0 (off)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected a whole number of at least {minimum}"
        )
    return number


def env_list(name: str, default: str) -> list[str]:
    """A comma-separated list; blanks around items are ignored."""
    value = os.environ.get(name, default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_ipv4(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip()
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected an IPv4 address of this machine, e.g. 0.0.0.0"
        ) from None


def env_time_zone(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip()
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected a time zone name such as Europe/Vienna or UTC"
        ) from None
    return value


def tighten(path: Path) -> None:
    """Take group's and others' access away from what older installs created
    with the umask's permissions. Only when we own the file: chmod on someone
    else's fails, and a shared set-up may want it that way on purpose."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        path.chmod(stat.S_IMODE(info.st_mode) & 0o700)


def data_dir(name: str, default: Path) -> Path:
    """The directory for the database, the secret key and the logs: only ours (0700)."""
    path = Path(os.environ.get(name) or default).expanduser().resolve()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        tighten(path)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{name}={str(path)!r}: cannot create it ({exc.strerror}): "
            "choose a directory this user may create and write"
        ) from None
    if not path.is_dir():
        raise ImproperlyConfigured(f"{name}={str(path)!r}: not a directory: choose a directory")
    # access() reports what this user may do; as root it is true for any
    # permissions, which is right: root can write there.
    if not os.access(path, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(
            f"{name}={str(path)!r}: this user cannot write there: "
            "make it writable for the user running kebaweb, or choose another directory"
        )
    return path


def persistent_secret_key(directory: Path) -> str:
    """The key kept in the data dir, created on first start.

    `scripts/run` starts several processes at once: publish the file with a
    hard link, which never replaces an existing key, so all of them agree.
    """
    path = directory / "secret_key"
    if not path.exists():
        temporary = directory / f".secret_key.{os.getpid()}"
        temporary.write_text(secrets.token_urlsafe(50))
        temporary.chmod(0o600)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    tighten(path)
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it and start again")
    return key


DATA_DIR = data_dir("KEBAWEB_DATA_DIR", BASE_DIR / "data")
SECRET_KEY = env_str("SECRET_KEY", "") or persistent_secret_key(DATA_DIR)
DEBUG = env_bool("KEBAWEB_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
if not ALLOWED_HOSTS:
    # Django would then answer every request with 400, which looks like a broken app.
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is empty: list the host names the web app answers to, "
        "e.g. ALLOWED_HOSTS=charging.example.org,127.0.0.1"
    )
CSRF_TRUSTED_ORIGINS = env_list("KEBAWEB_CSRF_TRUSTED_ORIGINS", "")

# Behind a reverse proxy that terminates TLS (README: "Behind a reverse proxy").
# The proxy must set X-Forwarded-Proto itself, overwriting what a client sent.
BEHIND_TLS_PROXY = env_bool("KEBAWEB_BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("KEBAWEB_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is a promise made for a whole domain by submitting it to the
    # browsers' list; the operator makes it, not an app's default.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

# The address the gateway's UDP socket binds (port 7090 is fixed by KEBA).
KEBA_BIND = env_ipv4("KEBA_BIND", "0.0.0.0")
# Where the gateway asks "who is there?" when a station went silent (DHCP).
# Unset (None): 255.255.255.255, or on loopback the stations' /24 (runtime.broadcast_for).
KEBA_BROADCAST = (
    env_ipv4("KEBA_BROADCAST", "255.255.255.255") if os.environ.get("KEBA_BROADCAST") else None
)

# Not "daphne": its app only swaps in its runserver, and importing it loads
# Twisted and cryptography (17 MiB) into every process, the task cluster's
# included. `serve` and the daphne command import it themselves.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_q",
    "axes",
    "django_htmx",
    "chargers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A full disk answers 503 with what to do, not a 500.
    "chargers.storage_full.StorageFullMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "kebaweb.urls"
ASGI_APPLICATION = "kebaweb.asgi.application"

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
                "chargers.roles.context",
            ],
        },
    },
]


def sqlite_file(name: str, path: Path) -> None:
    """Check the SQLite file can be written, and keep it private (0600).

    It holds password hashes and sessions. SQLite gives its -wal and -shm
    files the database file's permissions, so creating it 0600 here covers
    them; older installs are tightened at start."""
    if path.is_dir():
        raise ImproperlyConfigured(
            f"{name}: the SQLite database {str(path)!r} is a directory: "
            "move it away or point DATABASE_URL to a file"
        )
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            tighten(file)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{name}: cannot write the SQLite database {str(path)!r} ({exc.strerror}): "
            "make it writable for the user running kebaweb"
        ) from None
    # WAL mode creates the -wal and -shm files beside the database.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(
            f"{name}: cannot create files beside the SQLite database {str(path)!r}: "
            "make its directory writable for the user running kebaweb"
        )


def database(name: str, default: str) -> dict[str, Any]:
    url = os.environ.get(name) or default
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] != ":memory:":
            sqlite_file(name, Path(config["NAME"]))
        # WAL lets the dashboard read while the gateway writes; IMMEDIATE
        # takes the write lock at BEGIN, so concurrent writers wait for
        # busy_timeout instead of failing with "database is locked".
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            **config.get("OPTIONS", {}),
        }
    return config


DATABASES = {"default": database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'kebaweb.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    # Reaches only consumers in this process: the embedded case runs the
    # gateway inside daphne's event loop for exactly that reason.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Where `serve` runs the scheduled tasks: "thread" (in its own process, the
# default: chargers/task_thread.py) or "cluster" (django-q2's cluster as a child
# process; about 65 MiB more, bench/serve_memory.py). `manage.py qcluster`, the
# scaled layout's task process, is always the cluster.
SERVE_TASKS = env_str("KEBAWEB_TASKS", "thread")
if SERVE_TASKS not in ("thread", "cluster"):
    raise ImproperlyConfigured(f"KEBAWEB_TASKS={SERVE_TASKS!r}: use thread or cluster")

Q_CLUSTER: dict[str, Any] = {
    "name": "kebaweb",
    # One: the tasks are a daily retention run and the rules' boundaries, and
    # every worker is another Django process (bench/serve_memory.py).
    "workers": env_int("KEBAWEB_Q_WORKERS", 1, minimum=1),
    "timeout": 60,
    "retry": 120,  # must exceed timeout
    "catch_up": False,  # rules re-assert state; replaying missed runs adds nothing
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Retention of readings (chargers/retention.py, run daily by django-q2) ---
# Readings younger than READINGS_FULL_DAYS stay as stored; older ones keep one
# per minute per station, and after READINGS_MINUTE_DAYS one per
# READINGS_COARSE_MINUTES. Readings where state or plug changed always stay.
READINGS_FULL_DAYS = env_int("KEBAWEB_READINGS_FULL_DAYS", 2)
READINGS_MINUTE_DAYS = env_int("KEBAWEB_READINGS_MINUTE_DAYS", 30)
READINGS_COARSE_MINUTES = env_int("KEBAWEB_READINGS_COARSE_MINUTES", 15)
if READINGS_FULL_DAYS < 0:
    raise ImproperlyConfigured(
        f"KEBAWEB_READINGS_FULL_DAYS={READINGS_FULL_DAYS}: expected 0 or more"
    )
if READINGS_MINUTE_DAYS < 0:
    raise ImproperlyConfigured(
        f"KEBAWEB_READINGS_MINUTE_DAYS={READINGS_MINUTE_DAYS}: expected 0 or more"
    )
if READINGS_COARSE_MINUTES not in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60):
    raise ImproperlyConfigured(
        f"KEBAWEB_READINGS_COARSE_MINUTES={READINGS_COARSE_MINUTES}: expected minutes that "
        "divide an hour: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60"
    )
# --- end of retention ---

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chargers:home"
LOGOUT_REDIRECT_URL = "login"
# Kiosk mode: the dashboard without login, read-only, with no addresses, card
# numbers or owner names (chargers/roles.py, chargers/cards.py).
PUBLIC_DASHBOARD = env_bool("KEBAWEB_PUBLIC_DASHBOARD", False)

# --- Login throttling (django-axes) ---
# Counted per user name and client address together, so a guesser cannot lock
# the owner out from elsewhere. Behind a proxy every client has the proxy's
# address, and the lock then falls on the user name.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("KEBAWEB_LOGIN_ATTEMPTS", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("KEBAWEB_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# One row per failed login is enough; axes would also log every success.
AXES_DISABLE_ACCESS_LOG = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_time_zone("KEBAWEB_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing one
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Not the manifest storage: pages must render even before collectstatic ran.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app and project folders when collectstatic was not run.
WHITENOISE_USE_FINDERS = True

# --- Logging ---
# Errors from anything, and warnings from our own code, go to stderr and to a
# file in the data dir, so an HTTP 500 or a gateway failure leaves a trace even
# when nobody watched the terminal. Several processes (serve and its task
# cluster, or a gateway beside them) append to the same file; a rotation seen
# late by one of them only means a few lines land in the previous file.
LOG_DIR = DATA_DIR / "logs"
LOG_DIR.mkdir(mode=0o700, exist_ok=True)
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "{asctime} {levelname} {process} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "level": "WARNING", "formatter": "plain"},
        "file": {
            "class": "logging.handlers.RotatingFileHandler",
            "level": "WARNING",
            "formatter": "plain",
            "filename": LOG_DIR / "kebaweb.log",
            "maxBytes": 1024 * 1024,
            "backupCount": 5,
            "encoding": "utf-8",
            "delay": True,  # a process that never logs never opens it
        },
    },
    "root": {"handlers": ["stderr", "file"], "level": "ERROR"},
    "loggers": {
        # Replaces Django's own handlers (console when debugging, mail to
        # ADMINS): its errors, such as HTTP 500s, reach the root's instead.
        "django": {"handlers": [], "level": "ERROR"},
        "kebaweb": {"level": "WARNING"},
        "chargers": {"level": "WARNING"},
    },
}
# A log file on a full disk cannot be written: the record still reaches stderr,
# without a traceback about the file for every line (Python's advice for production).
logging.raiseExceptions = DEBUG
