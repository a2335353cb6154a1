"""`consultant staff add`, `consultant report [--html]`, `consultant admin`, the admin settings and the session key."""

from __future__ import annotations

import io
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from consultant import cli
from consultant.admin.server import admin_secret, build_admin
from consultant.errors import ConfigError
from consultant.models import StaffUser
from consultant.settings import load_settings
from consultant.staff import verify_staff

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_staff_add_reads_the_password_from_stdin_and_stores_only_a_hash(engine, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert cli.add_staff(engine, email="Lead@CaseConsultant.example", from_stdin=True) == 0
    assert capsys.readouterr().out == "Staff login created for lead@caseconsultant.example\n"
    with Session(engine) as session:
        user = session.exec(select(StaffUser)).one()
        assert user.password_hash.startswith("$argon2id$") and "passphrase" not in user.password_hash
        assert verify_staff(session, "lead@caseconsultant.example", "a long enough passphrase", now=NOW) is not None
        assert verify_staff(session, "lead@caseconsultant.example", "a long enough passphrasE", now=NOW) is None


@pytest.mark.parametrize(
    "email, password, message",
    [("lead@caseconsultant.example", "short", "at least 10 characters"),
     ("not-an-address", "a long enough passphrase", "not an email address")],
)
def test_staff_add_refuses_bad_input(engine, monkeypatch, capsys, email: str, password: str, message: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert cli.add_staff(engine, email=email, from_stdin=True) == 1
    assert message in capsys.readouterr().err


def test_staff_add_twice_and_mismatched_prompts(engine, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    cli.add_staff(engine, email="lead@caseconsultant.example", from_stdin=True)
    monkeypatch.setattr("sys.stdin", io.StringIO("another long passphrase\n"))
    assert cli.add_staff(engine, email="lead@caseconsultant.example", from_stdin=True) == 1
    assert "already has a staff login" in capsys.readouterr().err
    answers = iter(["first passphrase!", "second passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert cli.add_staff(engine, email="other@caseconsultant.example", from_stdin=False) == 1
    assert "the two passwords differ" in capsys.readouterr().err


def test_report_command_prints_or_writes_html(engine, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"CONSULTANT_ADMIN_URL": "https://admin.example"}, env_file=None)
    assert cli.report(settings, engine, html=None) == 0
    out = capsys.readouterr().out
    assert out.startswith("Cases by status:") and "Waiting for review, oldest first: 0" in out
    target = tmp_path / "digest.html"
    assert cli.report(settings, engine, html=str(target)) == 0
    assert capsys.readouterr().out == f"Wrote the daily digest to {target}\n"
    assert "https://admin.example/queue?status=needs_review" in target.read_text()


def test_the_parser_knows_the_new_commands() -> None:
    pytest.importorskip("consultant.codes.commands")  # the parser imports the codes and suggest commands
    parser = cli.build_parser()
    args = parser.parse_args(["admin", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.command, args.host, args.port) == ("admin", "0.0.0.0", 9000)
    args = parser.parse_args(["staff", "add", "a@b.example", "--password-stdin"])
    assert (args.staff_command, args.email, args.password_stdin) == ("add", "a@b.example", True)
    assert parser.parse_args(["report", "--html", "x.html"]).html == "x.html"


def test_admin_settings_parse_and_refuse_placeholders() -> None:
    settings = load_settings(
        {"CONSULTANT_ADMIN_PORT": "9090", "CONSULTANT_STAFF_ADDRESSES": "a@x.example, b@x.example",
         "CONSULTANT_DIGEST_TIME": "6:05", "CONSULTANT_ADMIN_SECRET": "s" * 10 + "0123456789abcdefghijklmnop"},
        env_file=None,
    )
    assert settings.admin_port == 9090 and settings.staff_addresses == ("a@x.example", "b@x.example")
    assert settings.digest_time == "06:05" and settings.admin_base_url == "http://127.0.0.1:9090"
    assert "0123456789" not in repr(settings)
    defaults = load_settings({}, env_file=None)
    assert (defaults.admin_host, defaults.session_minutes, defaults.digest_time) == ("127.0.0.1", 480, "07:00")
    for name, value in [
        ("CONSULTANT_ADMIN_SECRET", "changeme"),
        ("CONSULTANT_ADMIN_SECRET", "x" * 40),
        ("CONSULTANT_ADMIN_SECRET", "short-but-random-9f8e"),
        ("CONSULTANT_ADMIN_PORT", "70000"),
        ("CONSULTANT_STAFF_ADDRESSES", "a@x.example, nobody"),
        ("CONSULTANT_DIGEST_TIME", "25:00"),
        ("CONSULTANT_DIGEST_TIME", "7am"),
        ("CONSULTANT_SESSION_MINUTES", "0"),
        ("CONSULTANT_ADMIN_URL", "admin.example"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_settings({name: value}, env_file=None)
        assert err.value.setting == name, value


def test_an_unset_secret_is_made_once_and_kept_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({}, env_file=None)
    path = tmp_path / "var" / "admin-secret"
    first = admin_secret(settings, path=path)
    assert len(first) >= 32 and admin_secret(settings, path=path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("weak\n")
    with pytest.raises(ConfigError, match="too short"):
        admin_secret(settings, path=path)
    configured = load_settings({"CONSULTANT_ADMIN_SECRET": "q" * 8 + "0123456789abcdefghijklmnopqrstuv"}, env_file=None)
    assert admin_secret(configured, path=path) == configured.admin_secret


def test_build_admin_marks_cookies_secure_behind_https(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"CONSULTANT_ADMIN_URL": "https://admin.example"}, env_file=None)
    app = build_admin(settings, engine, secret_path=tmp_path / "secret")
    assert app.state.admin.sessions.cookie_name == "__Host-cc_session"
    plain = build_admin(load_settings({}, env_file=None), engine, secret_path=tmp_path / "secret")
    assert plain.state.admin.sessions.cookie_name == "cc_session"


def test_docs_describe_the_admin() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("consultant admin", "consultant staff add", "consultant report [--html FILE]"):
        assert command in readme, command
    admin_doc = (ROOT / "docs" / "ADMIN.md").read_text()
    for route in ("/login", "/queue", "/cases/", "/accounts", "/digest", "approve", "CSRF", "Content-Security-Policy"):
        assert route in admin_doc, route
