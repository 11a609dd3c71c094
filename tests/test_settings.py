"""Settings: file, environment overrides, SMTP URLs, secrets only from the environment."""
from __future__ import annotations

from pathlib import Path

import pytest

from mailer.errors import SettingsError
from mailer.settings import DEVELOPMENT_SECRET_KEY, load_settings, parse_smtp_url


def test_defaults_come_from_the_config_file() -> None:
    settings = load_settings({})
    assert settings.environment == "development" and settings.secret_keys == (DEVELOPMENT_SECRET_KEY,)
    assert settings.database_url == "sqlite:///var/mailer.sqlite"
    assert settings.newsletter("work-in-progress").reply_to == "international.affairs@comune.torino.it"


def test_environment_overrides() -> None:
    settings = load_settings({
        "MAILER_DATABASE_URL": "postgresql://u@db/mailer",
        "MAILER_SMTP_URL": "smtp://user:p%40ss@relay.example.net:587?starttls=true",
        "MAILER_SECRET_KEYS": "newest, older",
        "MAILER_BASE_URL": "https://newsletter.example.org/",
        "MAILER_SMTP_CONNECTIONS": "8",
    })
    assert settings.database_url == "postgresql://u@db/mailer"
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.username, settings.smtp.password) == ("relay.example.net", 587, "user", "p@ss")
    assert settings.smtp.starttls and not settings.smtp.implicit_tls
    assert settings.secret_keys == ("newest", "older")
    assert settings.base_url == "https://newsletter.example.org"
    assert settings.smtp_connections == 8
    assert "p@ss" not in repr(settings) and "p@ss" not in str(settings.smtp) and "newest" not in repr(settings)


def test_smtps_means_implicit_tls() -> None:
    target = parse_smtp_url("smtps://relay.example.net")
    assert target.implicit_tls and target.port == 465
    with pytest.raises(SettingsError, match="smtp://host:port"):
        parse_smtp_url("http://relay.example.net")


def test_development_key_is_refused_outside_development() -> None:
    with pytest.raises(SettingsError, match="MAILER_SECRET_KEYS must be set"):
        load_settings({"MAILER_ENV": "production"})
    with pytest.raises(SettingsError, match="development secret key is refused"):
        load_settings({"MAILER_ENV": "production", "MAILER_SECRET_KEYS": DEVELOPMENT_SECRET_KEY})
    key = "s3cret-" * 6
    production = {"MAILER_ENV": "production", "MAILER_SECRET_KEYS": key, "MAILER_BASE_URL": "https://n.example.org"}
    assert load_settings(production).secret_keys == (key,)


def test_secrets_in_a_settings_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "mailer.toml"
    config.write_text('secret_keys = ["oops"]\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="must not be in a settings file"):
        load_settings({"MAILER_CONFIG": str(config)})


def test_bad_settings_file_and_numbers(tmp_path: Path) -> None:
    config = tmp_path / "mailer.toml"
    config.write_text("[smtp\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="mailer.toml"):
        load_settings({"MAILER_CONFIG": str(config)})
    with pytest.raises(SettingsError, match="MAILER_SMTP_CONNECTIONS must be a number"):
        load_settings({"MAILER_SMTP_CONNECTIONS": "many"})


def test_counts_must_be_positive() -> None:
    with pytest.raises(SettingsError, match="MAILER_SMTP_CONNECTIONS must be at least 1, got 0"):
        load_settings({"MAILER_SMTP_CONNECTIONS": "0"})


PRODUCTION_KEY = "k" * 40


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAILER_BASE_URL": "https://n.example.org"}, "MAILER_SECRET_KEYS must be set"),
        ({"MAILER_SECRET_KEYS": DEVELOPMENT_SECRET_KEY, "MAILER_BASE_URL": "https://n.example.org"}, "development secret key"),
        ({"MAILER_SECRET_KEYS": "ab", "MAILER_BASE_URL": "https://n.example.org"}, "shorter than 32 bytes"),
        ({"MAILER_SECRET_KEYS": f"{PRODUCTION_KEY},short", "MAILER_BASE_URL": "https://n.example.org"}, "key 2 is shorter"),
        ({"MAILER_SECRET_KEYS": PRODUCTION_KEY, "MAILER_BASE_URL": "http://localhost:8000"}, "must be an https://"),
        ({"MAILER_SECRET_KEYS": PRODUCTION_KEY}, "must be an https://"),  # the config file's default is http
    ],
)
def test_production_refuses_weak_keys_and_plain_http_links(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"MAILER_ENV": "production", **env})


def test_production_accepts_long_keys_and_https() -> None:
    settings = load_settings({"MAILER_ENV": "production", "MAILER_SECRET_KEYS": PRODUCTION_KEY, "MAILER_BASE_URL": "https://n.example.org/"})
    assert settings.base_url == "https://n.example.org" and settings.secret_keys == (PRODUCTION_KEY,)


@pytest.mark.parametrize("url", ["localhost:8000", "https://a.example.org/x\r\nX-Evil: 1", "ftp://a.example.org",
                                 "https://a.example.org/newsletter", "https://a.example.org/?x=1"])
def test_a_base_url_that_would_break_links_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="MAILER_BASE_URL"):
        load_settings({"MAILER_BASE_URL": url})


def test_the_bounce_policy_comes_from_the_file_and_the_environment() -> None:
    from mailer.policy import BouncePolicy

    assert load_settings({}).bounce_policy == BouncePolicy()
    changed = load_settings({"MAILER_BOUNCE_THRESHOLD": "3", "MAILER_BOUNCE_COUNT_BLOCKS": "yes", "MAILER_BOUNCE_HARD_SUPPRESSES": "false"})
    assert (changed.bounce_policy.threshold, changed.bounce_policy.count_blocks, changed.bounce_policy.hard_suppresses) == (3.0, True, False)
    assert "suppressed at 3" in changed.bounce_policy.describe()
    for bad in ({"MAILER_BOUNCE_THRESHOLD": "0"}, {"MAILER_BOUNCE_COUNT_BLOCKS": "maybe"}, {"MAILER_BOUNCE_RESET_DAYS": "x"}):
        with pytest.raises(SettingsError):
            load_settings(bad)


def test_operators_existing_dispatch_settings_keep_their_names_and_new_ones_sit_beside_them() -> None:
    settings = load_settings({
        "MAILER_SMTP_TIMEOUT": "7", "MAILER_MAX_ATTEMPTS": "9", "MAILER_SMTP_RATE": "12", "MAILER_RETRY_MAX_AGE": "3600",
        "MAILER_SMTP_RATE_PER_HOUR": "5000", "MAILER_LEASE_SECONDS": "20",
    })
    assert (settings.smtp_timeout, settings.max_attempts, settings.lease_seconds) == (7, 9, 20)
    assert settings.retry_rule.max_attempts == 9 and settings.retry_rule.max_age == 3600
    assert settings.retry_rule.backoff == (300, 900, 3600, 14400)  # [dispatch] retry_backoff, as before
    assert settings.relays[0].limits.describe() == "12/s, 5000/h"


def test_several_relays_each_with_its_own_url_limits_and_credentials(tmp_path: Path) -> None:
    config = tmp_path / "mailer.toml"
    config.write_text(
        '[smtp]\nurl = "smtp://relay-a.example:587"\nconnections = 3\n'
        '[relays.provider-b]\nconnections = 2\nrate_per_minute = 600\nrate_per_domain_per_minute = 60\n'
    )
    settings = load_settings({"MAILER_CONFIG": str(config), "MAILER_RELAY_PROVIDER_B_URL": "smtps://user:secret@b.example:465"})
    main, other = settings.relays
    assert (main.name, main.target.host, main.connections) == ("main", "relay-a.example", 3)
    assert (other.name, other.target.host, other.target.password, other.connections) == ("provider-b", "b.example", "secret", 2)
    assert other.limits.describe() == "600/min, 60/min to each domain" and "secret" not in repr(settings)
    with pytest.raises(SettingsError, match=r"\[relays.provider-b\] has no url: set it there or in MAILER_RELAY_PROVIDER_B_URL"):
        load_settings({"MAILER_CONFIG": str(config)})
