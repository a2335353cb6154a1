"""One typed Settings object, read from the environment (and an optional .env).

Nothing here runs at import: `load_settings()` builds and validates a
Settings; every problem is a `ConfigError` naming the setting, which the CLI
prints as one line. Secrets are kept out of `repr` so they never reach logs.

With no `CONSULTANT_IMAP_HOST`, the service runs on its embedded default:
a pymap IMAP server and an aiosmtpd SMTP server on loopback (see embedded.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from consultant.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///var/consultant.sqlite3"
DEFAULT_ADDRESS = "consultant@localhost"
PLACEHOLDER_SECRETS = {"changeme", "change-me", "changethis", "secret", "password"}


@dataclass(frozen=True)
class Settings:
    imap_host: str = ""
    imap_port: int = 0
    imap_user: str = ""
    imap_password: str = field(default="", repr=False)
    imap_ssl: bool = True
    imap_folder: str = "INBOX"
    imap_processed_folder: str = "Processed"
    imap_timeout: float = 30.0
    imap_batch: int = 100
    imap_idle: bool = True
    match_process: bool = True
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_security: str = "starttls"
    smtp_timeout: float = 30.0
    smtp_connections: int = 2  # replies go out over this many connections at once (`consultant run`)
    address: str = DEFAULT_ADDRESS
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    poll_seconds: int = 60
    guest_answers: int = 1
    free_answers: int = 5
    send_attempts: int = 6
    review_below: float = 0.5
    retention_days: int = 30
    authserv_id: str = ""
    reply_cap_hour: int = 5
    reply_cap_day: int = 20
    review_no_codes: bool = True
    embedded_imap_port: int = 11143
    embedded_smtp_port: int = 10025
    log_level: str = "INFO"
    admin_host: str = "127.0.0.1"
    admin_port: int = 8080
    admin_secret: str = field(default="", repr=False)
    admin_url: str = ""
    staff_addresses: tuple[str, ...] = ()
    digest_time: str = "07:00"
    session_minutes: int = 480

    @property
    def embedded(self) -> bool:
        """True when no real mailbox is configured."""
        return not self.imap_host

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"

    @property
    def admin_base_url(self) -> str:
        """Where staff reach the admin pages (for links in the digest)."""
        return (self.admin_url or f"http://{self.admin_host}:{self.admin_port}").rstrip("/")


# env name -> (field, parser)
def _int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {value!r}") from None
    if number < 0:
        raise ConfigError(name, "must not be negative")
    return number


def _float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(name, "must be greater than zero")
    return number


def _fraction(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise ConfigError(name, "must be between 0 and 1")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _str(_name: str, value: str) -> str:
    return value.strip()


def _addresses(name: str, value: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in value.split(",") if part.strip())
    for address in addresses:
        local, _, domain = address.partition("@")
        if not local or not domain or "@" in domain or any(ch.isspace() for ch in address):
            raise ConfigError(name, f"is not a comma-separated list of email addresses: {address!r}")
    return addresses


def _clock(name: str, value: str) -> str:
    """HH:MM (24-hour, UTC), or "off"."""
    text = value.strip().lower()
    if text == "off":
        return text
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and int(hours) < 24 and int(minutes) < 60):
        raise ConfigError(name, f"must be a time of day as HH:MM (UTC), or off; got {value!r}")
    return f"{int(hours):02d}:{minutes}"


ENV_FIELDS: dict[str, tuple[str, object]] = {
    "CONSULTANT_IMAP_HOST": ("imap_host", _str),
    "CONSULTANT_IMAP_PORT": ("imap_port", _int),
    "CONSULTANT_IMAP_USER": ("imap_user", _str),
    "CONSULTANT_IMAP_PASSWORD": ("imap_password", _str),
    "CONSULTANT_IMAP_SSL": ("imap_ssl", _bool),
    "CONSULTANT_IMAP_FOLDER": ("imap_folder", _str),
    "CONSULTANT_IMAP_PROCESSED_FOLDER": ("imap_processed_folder", _str),
    "CONSULTANT_IMAP_TIMEOUT": ("imap_timeout", _float),
    "CONSULTANT_IMAP_BATCH": ("imap_batch", _int),
    "CONSULTANT_IMAP_IDLE": ("imap_idle", _bool),
    "CONSULTANT_MATCH_PROCESS": ("match_process", _bool),
    "CONSULTANT_SMTP_HOST": ("smtp_host", _str),
    "CONSULTANT_SMTP_PORT": ("smtp_port", _int),
    "CONSULTANT_SMTP_USER": ("smtp_user", _str),
    "CONSULTANT_SMTP_PASSWORD": ("smtp_password", _str),
    "CONSULTANT_SMTP_SECURITY": ("smtp_security", _str),
    "CONSULTANT_SMTP_TIMEOUT": ("smtp_timeout", _float),
    "CONSULTANT_SMTP_CONNECTIONS": ("smtp_connections", _int),
    "CONSULTANT_ADDRESS": ("address", _str),
    "CONSULTANT_DATABASE_URL": ("database_url", _str),
    "CONSULTANT_POLL_SECONDS": ("poll_seconds", _int),
    "CONSULTANT_GUEST_ANSWERS": ("guest_answers", _int),
    "CONSULTANT_FREE_ANSWERS": ("free_answers", _int),
    "CONSULTANT_SEND_ATTEMPTS": ("send_attempts", _int),
    "CONSULTANT_REVIEW_BELOW": ("review_below", _fraction),
    "CONSULTANT_RETENTION_DAYS": ("retention_days", _int),
    "CONSULTANT_AUTHSERV_ID": ("authserv_id", _str),
    "CONSULTANT_REPLY_CAP_HOUR": ("reply_cap_hour", _int),
    "CONSULTANT_REPLY_CAP_DAY": ("reply_cap_day", _int),
    "CONSULTANT_REVIEW_NO_CODES": ("review_no_codes", _bool),
    "CONSULTANT_EMBEDDED_IMAP_PORT": ("embedded_imap_port", _int),
    "CONSULTANT_EMBEDDED_SMTP_PORT": ("embedded_smtp_port", _int),
    "CONSULTANT_LOG_LEVEL": ("log_level", _str),
    "CONSULTANT_ADMIN_HOST": ("admin_host", _str),
    "CONSULTANT_ADMIN_PORT": ("admin_port", _int),
    "CONSULTANT_ADMIN_SECRET": ("admin_secret", _str),
    "CONSULTANT_ADMIN_URL": ("admin_url", _str),
    "CONSULTANT_STAFF_ADDRESSES": ("staff_addresses", _addresses),
    "CONSULTANT_DIGEST_TIME": ("digest_time", _clock),
    "CONSULTANT_SESSION_MINUTES": ("session_minutes", _int),
}


def read_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines from a .env file (python-dotenv does the parsing)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = Path(".env")
) -> Settings:
    """Build Settings from `environ` (default os.environ) over an optional .env file."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update(read_env_file(env_file))
    values.update(os.environ if environ is None else environ)
    kwargs: dict[str, object] = {}
    for name, (attr, parse) in ENV_FIELDS.items():
        raw = values.get(name)
        if raw is None or raw.strip() == "":
            continue
        kwargs[attr] = parse(name, raw)  # type: ignore[operator]
    settings = Settings(**kwargs)  # type: ignore[arg-type]
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.smtp_security not in {"none", "starttls", "ssl"}:
        raise ConfigError("CONSULTANT_SMTP_SECURITY", "must be one of none, starttls, ssl")
    if "@" not in settings.address or settings.address.count("@") != 1:
        raise ConfigError("CONSULTANT_ADDRESS", f"is not an email address: {settings.address!r}")
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        raise ConfigError("CONSULTANT_DATABASE_URL", "is not a database URL") from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError("CONSULTANT_DATABASE_URL", "must be sqlite:/// or postgresql+psycopg://")
    if settings.retention_days < 1:
        raise ConfigError("CONSULTANT_RETENTION_DAYS", "must be at least 1")
    if settings.reply_cap_hour < 1 or settings.reply_cap_day < settings.reply_cap_hour:
        raise ConfigError("CONSULTANT_REPLY_CAP_DAY", "caps must be at least 1, and the daily cap at least the hourly one")
    if settings.poll_seconds < 1:
        raise ConfigError("CONSULTANT_POLL_SECONDS", "must be at least 1")
    if not 1 <= settings.smtp_connections <= 8:
        raise ConfigError("CONSULTANT_SMTP_CONNECTIONS", "must be between 1 and 8")
    if not 1 <= settings.imap_batch <= 1000:
        raise ConfigError("CONSULTANT_IMAP_BATCH", "must be between 1 and 1000")
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("CONSULTANT_LOG_LEVEL", "must be DEBUG, INFO, WARNING or ERROR")
    validate_admin(settings)
    if not settings.embedded:
        if not settings.imap_user:
            raise ConfigError("CONSULTANT_IMAP_USER", "is required when CONSULTANT_IMAP_HOST is set")
        if not settings.smtp_host:
            raise ConfigError("CONSULTANT_SMTP_HOST", "is required when CONSULTANT_IMAP_HOST is set")
        for name, secret in (
            ("CONSULTANT_IMAP_PASSWORD", settings.imap_password),
            ("CONSULTANT_SMTP_PASSWORD", settings.smtp_password),
        ):
            if secret.lower() in PLACEHOLDER_SECRETS:
                raise ConfigError(name, "is a placeholder; set the real password")


ADMIN_SECRET_MIN_LENGTH = 32


def validate_admin(settings: Settings) -> None:
    if not 1 <= settings.admin_port <= 65535:
        raise ConfigError("CONSULTANT_ADMIN_PORT", "must be between 1 and 65535")
    if settings.session_minutes < 1:
        raise ConfigError("CONSULTANT_SESSION_MINUTES", "must be at least 1")
    secret = settings.admin_secret
    if secret and (secret.lower() in PLACEHOLDER_SECRETS or len(set(secret)) < 8):
        raise ConfigError("CONSULTANT_ADMIN_SECRET", "is a placeholder; set a long random value (or leave it empty)")
    if secret and len(secret) < ADMIN_SECRET_MIN_LENGTH:
        raise ConfigError("CONSULTANT_ADMIN_SECRET", f"must be at least {ADMIN_SECRET_MIN_LENGTH} characters")
    if settings.admin_url and not settings.admin_url.startswith(("http://", "https://")):
        raise ConfigError("CONSULTANT_ADMIN_URL", "must start with http:// or https://")


def imap_port(settings: Settings) -> int:
    return settings.imap_port or (993 if settings.imap_ssl else 143)


def smtp_port(settings: Settings) -> int:
    if settings.smtp_port:
        return settings.smtp_port
    return {"ssl": 465, "starttls": 587, "none": 25}[settings.smtp_security]


def documented_names() -> list[str]:
    """Every environment variable the service reads (tests check the docs list them)."""
    assert {attr for attr, _ in ENV_FIELDS.values()} <= {f.name for f in fields(Settings)}
    return list(ENV_FIELDS)
