"""Settings for kebaweb, read from the environment.

The defaults suit the embedded case (one machine, SQLite, no Redis); every
variable is listed in the README. A bad value stops start-up with a message
naming the variable.
"""

import ipaddress
import os
import secrets
import zoneinfo
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


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number") from None


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


def data_dir(name: str, default: Path) -> Path:
    path = Path(os.environ.get(name) or default).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}={str(path)!r}: cannot create it: {exc}") from None
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
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it and start again")
    return key


DATA_DIR = data_dir("KEBAWEB_DATA_DIR", BASE_DIR / "data")
SECRET_KEY = env_str("SECRET_KEY", "") or persistent_secret_key(DATA_DIR)
DEBUG = env_bool("KEBAWEB_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("KEBAWEB_CSRF_TRUSTED_ORIGINS", "")

# The address the gateway's UDP socket binds (port 7090 is fixed by KEBA).
KEBA_BIND = env_ipv4("KEBA_BIND", "0.0.0.0")
# Where the gateway asks "who is there?" when a station went silent (DHCP).
# Unset (None): 255.255.255.255, or on loopback the stations' /24 (runtime.broadcast_for).
KEBA_BROADCAST = (
    env_ipv4("KEBA_BROADCAST", "255.255.255.255") if os.environ.get("KEBA_BROADCAST") else None
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_q",
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
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
            ],
        },
    },
]


def database(name: str, default: str) -> dict[str, Any]:
    url = os.environ.get(name) or default
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
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

Q_CLUSTER: dict[str, Any] = {
    "name": "kebaweb",
    "workers": env_int("KEBAWEB_Q_WORKERS", 2),
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

LOGIN_URL = "admin:login"

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
