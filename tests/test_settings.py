"""Settings: defaults, parsing, one clear line per bad value, and the docs list every name."""

from __future__ import annotations

from pathlib import Path

import pytest

from consultant.errors import ConfigError
from consultant.settings import documented_names, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_embedded_service() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.embedded
    assert settings.database_url.startswith("sqlite:///")
    assert settings.poll_seconds == 60


def test_real_mailbox_settings_parse() -> None:
    settings = load_settings(
        {
            "CONSULTANT_IMAP_HOST": "imap.example.org",
            "CONSULTANT_IMAP_USER": "consult@example.org",
            "CONSULTANT_IMAP_PASSWORD": "s3cret-imap",
            "CONSULTANT_IMAP_SSL": "false",
            "CONSULTANT_SMTP_HOST": "smtp.example.org",
            "CONSULTANT_SMTP_SECURITY": "ssl",
            "CONSULTANT_POLL_SECONDS": "15",
            "CONSULTANT_DATABASE_URL": "postgresql+psycopg://u@db/consultant",
        },
        env_file=None,
    )
    assert not settings.embedded and not settings.imap_ssl and settings.poll_seconds == 15
    assert "s3cret-imap" not in repr(settings)
    assert "postgresql" not in repr(settings)


@pytest.mark.parametrize(
    "name, value",
    [
        ("CONSULTANT_IMAP_PORT", "abc"),
        ("CONSULTANT_IMAP_SSL", "maybe"),
        ("CONSULTANT_SMTP_SECURITY", "tls13"),
        ("CONSULTANT_DATABASE_URL", "not a url"),
        ("CONSULTANT_DATABASE_URL", "mysql://x@y/z"),
        ("CONSULTANT_POLL_SECONDS", "0"),
        ("CONSULTANT_ADDRESS", "nobody"),
    ],
)
def test_bad_setting_names_itself(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({name: value}, env_file=None)
    assert err.value.setting == name
    assert value not in ("s3cret",)  # the message names the setting, not a secret


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("CONSULTANT_POLL_SECONDS=7\n")
    assert load_settings({}, env_file=env).poll_seconds == 7


def test_every_setting_is_in_the_readme_and_env_example() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for name in documented_names():
        assert name in readme, f"{name} missing from README.md"
        assert name in example, f"{name} missing from .env.example"
