"""Settings: config/mailer.toml (or MAILER_CONFIG) overridden by MAILER_* environment variables, read once.

Secrets (secret keys, SMTP password) come only from the environment. Outside the "development"
environment the built-in development key is refused.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from mailer.policy import BouncePolicy
from mailer.rate_limits import RateLimits
from mailer.retry import RetryRule
from mailer.errors import SettingsError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent  # the checkout (examples/, tests/); in an installed wheel, site-packages


def _bundled(name: str) -> Path:
    """templates/ or config/: inside the package when installed from a wheel, else at the top of the checkout."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PROJECT_ROOT / name


DEFAULT_CONFIG = _bundled("config") / "mailer.toml"
TEMPLATES_DIR = _bundled("templates")

# Signs links on a developer's machine only; refused whenever MAILER_ENV is not "development".
# The languages the newsletter, its pages and its notices are written in, each named in itself.
LANGUAGE_NAMES = {"it": "Italiano", "en": "English"}
LANGUAGES = tuple(LANGUAGE_NAMES)
DEVELOPMENT_SECRET_KEY = "development-key-not-secret"
MIN_SECRET_KEY_BYTES = 32


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to reach the SMTP relay, parsed from an smtp:// or smtps:// URL."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    implicit_tls: bool = False
    starttls: bool | None = None  # None: upgrade when the server offers it; True: required; False: never
    validate_certs: bool = True

    def __str__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        auth = f"{self.username}:***@" if self.username else ""
        tls = {True: "?starttls=true", False: "?starttls=false", None: ""}[self.starttls]
        return f"{scheme}://{auth}{self.host}:{self.port}{tls}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """smtp://[user:pass@]host[:port][?starttls=true|false&verify=false] or smtps://... (implicit TLS).
    smtp:// upgrades with STARTTLS whenever the server offers it; starttls=true requires it, starttls=false
    never tries (a local relay whose offer is broken)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise SettingsError(f"SMTP URL must look like smtp://host:port or smtps://host:port, got {mask_url(url)!r}")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 25)
    except ValueError as exc:
        raise SettingsError(f"SMTP URL has a bad port: {mask_url(url)!r}") from exc
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit,
        starttls=_starttls(query.get("starttls"), mask_url(url)),
        validate_certs=query.get("verify", "true") not in ("0", "false", "no"),
    )


def _starttls(value: str | None, shown: str) -> bool | None:
    if value is None:
        return None
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise SettingsError(f"SMTP URL: starttls must be true or false, got {value!r} in {shown!r}")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


@dataclass(frozen=True)
class RelaySettings:
    """One SMTP relay the dispatcher sends through, with its own connections and limits. `[smtp]` is the
    relay named 'main'; `[relays.NAME]` tables add others (their URLs, with credentials, best given as
    MAILER_RELAY_<NAME>_URL). A send spreads over every relay's connections."""

    name: str
    target: SmtpTarget
    connections: int = 4
    messages_per_connection: int = 500
    limits: RateLimits = field(default_factory=RateLimits)


@dataclass(frozen=True)
class NewsletterSettings:
    """The fixed parts of one newsletter: sender, footer, list headers. Issues name it by id."""

    id: str
    title: str
    list: str
    from_name: str
    from_address: str
    reply_to: str
    list_id: str
    bounce_address: str
    unsubscribe_mailto: str
    website: str = ""
    language: str = "it"  # the default edition: subscribers whose language has no edition of an issue get this one
    logo_url: str = ""  # absolute, or a path on our web app (e.g. /static/logo-wip.png); empty: no logo
    logo_width: int = 64  # CSS pixels; draw the image at twice that for sharp phones
    logo_alt: str = ""  # empty: the logo is decorative (the masthead's h1 already names the newsletter)
    accent_color: str = "#004b87"
    contact: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    environment: str
    database_url: str
    smtp: SmtpTarget
    smtp_connections: int
    smtp_messages_per_connection: int
    smtp_rate: float
    smtp_timeout: float
    batch_size: int
    lease_seconds: int
    max_attempts: int
    retry_backoff: tuple[int, ...]
    base_url: str
    secret_keys: tuple[str, ...] = field(repr=False)
    newsletters: Mapping[str, NewsletterSettings] = field(default_factory=dict)
    config_path: Path = DEFAULT_CONFIG
    dkim_key_file: str = ""  # PEM private key (RSA-2048 or Ed25519); empty: messages are not signed
    dkim_selector: str = ""
    dkim_domain: str = ""  # empty: the domain of each newsletter's From address
    bounce_policy: BouncePolicy = field(default_factory=BouncePolicy)
    smtp_data_timeout: float = 600.0  # seconds to wait for the reply to the message's final dot (RFC 5321: 10 min)
    retry_max_age: int = 3 * 86400  # a delivery still deferred this long after it was queued fails
    retry_max_backoff: int = 21600  # beyond retry_backoff the waits double up to this
    retry_jitter: float = 0.2
    smtp_rate_per_minute: float = 0.0
    smtp_rate_per_hour: float = 0.0
    smtp_rate_per_domain_per_minute: float = 0.0
    extra_relays: tuple[RelaySettings, ...] = ()  # [relays.NAME], beside the main one
    database_busy_timeout: float = 30.0  # SQLite: seconds a write waits for another's lock before it is retried
    pause_failure_rate: float = 0.5  # pause a campaign when this share of its last attempts failed (0: never)
    failure_window: int = 200

    @property
    def rate_limits(self) -> RateLimits:
        """The main relay's limits, shared through the database by every process sending through it."""
        return RateLimits(self.smtp_rate, self.smtp_rate_per_minute, self.smtp_rate_per_hour, self.smtp_rate_per_domain_per_minute)

    @property
    def relays(self) -> tuple[RelaySettings, ...]:
        """Every relay a send goes through: the main one ([smtp]) first."""
        main = RelaySettings("main", self.smtp, self.smtp_connections, self.smtp_messages_per_connection, self.rate_limits)
        return (main, *self.extra_relays)

    @property
    def retry_rule(self) -> RetryRule:
        return RetryRule(self.retry_backoff, self.retry_max_backoff, self.max_attempts, self.retry_max_age, self.retry_jitter)

    def newsletter(self, newsletter_id: str) -> NewsletterSettings:
        try:
            return self.newsletters[newsletter_id]
        except KeyError:
            known = ", ".join(sorted(self.newsletters)) or "none"
            raise SettingsError(
                f"newsletter {newsletter_id!r} is not configured in {self.config_path} (configured: {known})"
            ) from None

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


def _get(table: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = table
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def _number(env: Mapping[str, str], name: str, value: Any, kind: type) -> Any:
    raw = env.get(name, value)
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _check_production(environment: str, keys: tuple[str, ...], base_url: str) -> None:
    """Outside development: real keys, long enough to resist guessing, and https links in every message."""
    where = f"when MAILER_ENV is {environment!r}"
    if not keys:
        raise SettingsError(f"MAILER_SECRET_KEYS must be set {where}")
    if DEVELOPMENT_SECRET_KEY in keys:
        raise SettingsError(f"the development secret key is refused {where}")
    short = [n for n, key in enumerate(keys, 1) if len(key.encode("utf-8")) < MIN_SECRET_KEY_BYTES]
    if short:
        raise SettingsError(
            f"MAILER_SECRET_KEYS: key {', '.join(map(str, short))} is shorter than {MIN_SECRET_KEY_BYTES} bytes {where}; "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    if urlsplit(base_url).scheme != "https":
        raise SettingsError(f"MAILER_BASE_URL must be an https:// address {where} (unsubscribe links), got {base_url!r}")


def _check_base_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in base_url):
        raise SettingsError(f"MAILER_BASE_URL must look like https://host, got {base_url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(f"MAILER_BASE_URL must be the root of a host (the web app serves /u/, /archive/, /admin/ there), got {base_url!r}")


def _bounce_policy(env: Mapping[str, str], data: Mapping[str, Any]) -> BouncePolicy:
    """[bounces] in the settings file, MAILER_BOUNCE_* in the environment."""
    default = BouncePolicy()

    def flag(name: str, key: str, value: bool) -> bool:
        raw = env.get(name, _get(data, key, value))
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(raw).strip().lower() in ("1", "true", "yes", "on")
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    policy = BouncePolicy(
        hard_suppresses=flag("MAILER_BOUNCE_HARD_SUPPRESSES", "bounces.hard_suppresses", default.hard_suppresses),
        soft_weight=_number(env, "MAILER_BOUNCE_SOFT_WEIGHT", _get(data, "bounces.soft_weight", default.soft_weight), float),
        hard_weight=_number(env, "MAILER_BOUNCE_HARD_WEIGHT", _get(data, "bounces.hard_weight", default.hard_weight), float),
        threshold=_number(env, "MAILER_BOUNCE_THRESHOLD", _get(data, "bounces.threshold", default.threshold), float),
        reset_days=_number(env, "MAILER_BOUNCE_RESET_DAYS", _get(data, "bounces.reset_days", default.reset_days), int),
        count_blocks=flag("MAILER_BOUNCE_COUNT_BLOCKS", "bounces.count_blocks", default.count_blocks),
    )
    if policy.threshold <= 0 or policy.soft_weight < 0 or policy.hard_weight < 0 or policy.reset_days < 1:
        raise SettingsError("[bounces]: threshold must be above 0, weights not negative, reset_days at least 1")
    return policy


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file named by MAILER_CONFIG (default config/mailer.toml), then the environment."""
    env = os.environ if env is None else env
    path = Path(env.get("MAILER_CONFIG", DEFAULT_CONFIG))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {exc}") from None
    if _get(data, "secret_keys") or _get(data, "security.secret_keys"):
        raise SettingsError(f"{path}: secret keys must not be in a settings file; set MAILER_SECRET_KEYS")

    environment = env.get("MAILER_ENV", data.get("environment", "development"))
    keys = tuple(k.strip() for k in env.get("MAILER_SECRET_KEYS", "").split(",") if k.strip())
    base_url = env.get("MAILER_BASE_URL", _get(data, "web.base_url", "http://localhost:8000")).rstrip("/")
    if environment == "development":
        keys = keys or (DEVELOPMENT_SECRET_KEY,)
    else:
        _check_production(environment, keys, base_url)
    _check_base_url(base_url)

    newsletters = {}
    for nid, table in (data.get("newsletters") or {}).items():
        try:
            newsletters[nid] = NewsletterSettings(id=nid, **{**table, "contact": tuple(table.get("contact", ()))})
        except TypeError as exc:
            raise SettingsError(f"{path}: [newsletters.{nid}]: {exc}") from None

    backoff = _get(data, "dispatch.retry_backoff", [300, 900, 3600, 14400])
    settings = Settings(
        environment=environment,
        database_url=env.get("MAILER_DATABASE_URL", _get(data, "database.url", "sqlite:///var/mailer.sqlite")),
        smtp=parse_smtp_url(env.get("MAILER_SMTP_URL", _get(data, "smtp.url", "smtp://127.0.0.1:8025"))),
        smtp_connections=_number(env, "MAILER_SMTP_CONNECTIONS", _get(data, "smtp.connections", 4), int),
        smtp_messages_per_connection=_number(
            env, "MAILER_SMTP_MESSAGES_PER_CONNECTION", _get(data, "smtp.messages_per_connection", 500), int
        ),
        smtp_rate=_number(env, "MAILER_SMTP_RATE", _get(data, "smtp.rate_per_second", 0), float),
        smtp_timeout=_number(env, "MAILER_SMTP_TIMEOUT", _get(data, "smtp.timeout", 30), float),
        batch_size=_number(env, "MAILER_BATCH_SIZE", _get(data, "dispatch.batch_size", 100), int),
        lease_seconds=_number(env, "MAILER_LEASE_SECONDS", _get(data, "dispatch.lease_seconds", 60), int),
        max_attempts=_number(env, "MAILER_MAX_ATTEMPTS", _get(data, "dispatch.max_attempts", 30), int),
        retry_backoff=tuple(int(s) for s in backoff) or (300,),
        base_url=base_url,
        secret_keys=keys,
        newsletters=newsletters,
        config_path=path,
        dkim_key_file=env.get("MAILER_DKIM_KEY_FILE", _get(data, "dkim.key_file", "")),
        dkim_selector=env.get("MAILER_DKIM_SELECTOR", _get(data, "dkim.selector", "")),
        dkim_domain=env.get("MAILER_DKIM_DOMAIN", _get(data, "dkim.domain", "")),
        bounce_policy=_bounce_policy(env, data),
        smtp_data_timeout=_number(env, "MAILER_SMTP_DATA_TIMEOUT", _get(data, "smtp.data_timeout", 600), float),
        retry_max_age=_number(env, "MAILER_RETRY_MAX_AGE", _get(data, "dispatch.retry_max_age", 3 * 86400), int),
        retry_max_backoff=_number(env, "MAILER_RETRY_MAX_BACKOFF", _get(data, "dispatch.retry_max_backoff", 21600), int),
        retry_jitter=_number(env, "MAILER_RETRY_JITTER", _get(data, "dispatch.retry_jitter", 0.2), float),
        smtp_rate_per_minute=_number(env, "MAILER_SMTP_RATE_PER_MINUTE", _get(data, "smtp.rate_per_minute", 0), float),
        smtp_rate_per_hour=_number(env, "MAILER_SMTP_RATE_PER_HOUR", _get(data, "smtp.rate_per_hour", 0), float),
        smtp_rate_per_domain_per_minute=_number(
            env, "MAILER_SMTP_RATE_PER_DOMAIN", _get(data, "smtp.rate_per_domain_per_minute", 0), float
        ),
        extra_relays=_relays(env, data, path),
        database_busy_timeout=_number(env, "MAILER_SQLITE_BUSY_TIMEOUT", _get(data, "database.busy_timeout", 30), float),
        pause_failure_rate=_number(env, "MAILER_PAUSE_FAILURE_RATE", _get(data, "dispatch.pause_failure_rate", 0.5), float),
        failure_window=_number(env, "MAILER_FAILURE_WINDOW", _get(data, "dispatch.failure_window", 200), int),
    )
    if settings.dkim_key_file and not settings.dkim_selector:
        raise SettingsError("MAILER_DKIM_KEY_FILE is set but MAILER_DKIM_SELECTOR is not: name the key's DNS selector")
    for name, value in (("MAILER_SMTP_CONNECTIONS", settings.smtp_connections), ("MAILER_BATCH_SIZE", settings.batch_size),
                        ("MAILER_MAX_ATTEMPTS", settings.max_attempts), ("MAILER_SMTP_MESSAGES_PER_CONNECTION", settings.smtp_messages_per_connection)):
        if value < 1:
            raise SettingsError(f"{name} must be at least 1, got {value}")
    return settings


def _relays(env: Mapping[str, str], data: dict[str, Any], path: Path) -> tuple[RelaySettings, ...]:
    """The [relays.NAME] tables: url (or MAILER_RELAY_<NAME>_URL), connections, messages_per_connection and
    the same rate limits as [smtp]."""
    found = []
    for name, table in (data.get("relays") or {}).items():
        if name == "main" or not isinstance(table, dict):
            raise SettingsError(f"{path}: [relays.{name}]: 'main' is the [smtp] relay; name the others differently")
        var = f"MAILER_RELAY_{name.upper().replace('-', '_')}_URL"
        url = env.get(var, table.get("url", ""))
        if not url:
            raise SettingsError(f"{path}: [relays.{name}] has no url: set it there or in {var}")
        limits = RateLimits(*(float(table.get(key, 0)) for key in (
            "rate_per_second", "rate_per_minute", "rate_per_hour", "rate_per_domain_per_minute"
        )))
        relay = RelaySettings(name, parse_smtp_url(url), int(table.get("connections", 2)), int(table.get("messages_per_connection", 500)), limits)
        if relay.connections < 1 or relay.messages_per_connection < 1:
            raise SettingsError(f"{path}: [relays.{name}]: connections and messages_per_connection must be at least 1")
        found.append(relay)
    return tuple(found)
