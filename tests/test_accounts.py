"""Email commands: what counts as a command, and the registration code's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from consultant.accounts import confirm_registration, start_registration
from consultant.commands import Command, detect_command
from consultant.db import session_scope
from consultant.models import Account, Tier

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "subject, body, command",
    [
        ("register", "", Command("register")),
        ("Re: register", "123456\n", Command("confirm", "123456")),
        ("Coding question", "Register.\nthanks", Command("register")),
        ("BALANCE", "", Command("balance")),
        ("quota?", "", Command("balance")),
        ("help", "", Command("help")),
        ("", "code: 654321", Command("confirm", "654321")),
        ("What is CPT 62310?", "please help me with this code", None),
        ("register my patient's visit code", "", None),
        ("Question", "My phone is 555123 call me", None),
    ],
)
def test_detect_command(subject: str, body: str, command: Command | None) -> None:
    assert detect_command(subject, body) == command


def test_a_code_registers_only_its_own_address_and_only_once(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        code = start_registration(session, "ann@clinic.example", now=NOW)
    assert code is not None and len(code) == 6
    with session_scope(engine) as session:
        assert not confirm_registration(session, "eve@evil.example", code, now=NOW)
        assert confirm_registration(session, "ann@clinic.example", code, now=NOW)
    with session_scope(engine) as session:
        assert not confirm_registration(session, "ann@clinic.example", code, now=NOW)  # used
        account = session.exec(select(Account).where(Account.email == "ann@clinic.example")).one()
        assert account.tier == Tier.free
        assert start_registration(session, "ann@clinic.example", now=NOW) is None  # already registered


def test_codes_expire_and_wrong_tries_are_limited(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        code = start_registration(session, "bo@clinic.example", now=NOW)
    assert code is not None
    with session_scope(engine) as session:
        assert not confirm_registration(session, "bo@clinic.example", code, now=NOW + timedelta(hours=25))
    with session_scope(engine) as session:
        fresh = start_registration(session, "bo@clinic.example", now=NOW)
    assert fresh is not None
    wrong = f"{(int(fresh) + 1) % 1_000_000:06d}"
    for _ in range(5):
        with session_scope(engine) as session:
            assert not confirm_registration(session, "bo@clinic.example", wrong, now=NOW)
    with session_scope(engine) as session:
        assert not confirm_registration(session, "bo@clinic.example", fresh, now=NOW)  # locked after 5 tries
