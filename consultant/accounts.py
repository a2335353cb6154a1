"""Accounts by email: `register`, the confirmation code, `balance`/`quota` and `help`.

A sender who writes `register` (as the subject, or the first line) gets a
one-time six-digit code by email; replying with that code from the same
address turns the guest account into a free registered one. The code goes
only to the address being registered, so nobody can register someone
else's address. Codes are stored hashed, expire after a day and allow five
wrong tries. These commands never spend quota; machine mail never reaches
here (the pipeline drops it first).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from consultant.models import Account, Registration, Tier
from consultant.quota import ensure_account

CODE_TTL = timedelta(hours=24)
MAX_TRIES = 5
_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd)\s*:\s*)+", re.IGNORECASE)
COMMANDS = {"register": "register", "balance": "balance", "quota": "balance", "help": "help"}


@dataclass(frozen=True)
class Command:
    kind: str  # register, confirm, balance, help
    code: str = ""


def detect_command(subject: str, body: str) -> Command | None:
    """A command is the subject or the first body line, alone (a little punctuation allowed).

    A six-digit code as the first line wins over the subject, because the reply
    to our register email keeps the subject "Re: register".
    """
    first_line = next((line for line in body.splitlines() if line.strip()), "")
    confirm = re.fullmatch(r"(?:register|confirm|code)?\s*:?\s*(\d{6})", _word(first_line))
    if confirm:
        return Command("confirm", confirm.group(1))
    for candidate in (_PREFIX.sub("", subject), first_line):
        if _word(candidate) in COMMANDS:
            return Command(COMMANDS[_word(candidate)])
    return None


def _word(text: str) -> str:
    return text.strip().strip(".!?:").strip().lower()


def _hash(email: str, code: str) -> str:
    return hashlib.sha256(f"{email}\0{code}".encode()).hexdigest()


def start_registration(session: Session, email: str, *, now: datetime) -> str | None:
    """Issue a one-time code for `email`; None when the address is already registered."""
    account = session.exec(select(Account).where(Account.email == email)).first()
    if account is not None and account.tier != Tier.guest:
        return None
    code = f"{secrets.randbelow(1_000_000):06d}"
    session.add(Registration(email=email, code_hash=_hash(email, code), created_at=now, expires_at=now + CODE_TTL))
    return code


def confirm_registration(session: Session, email: str, code: str, *, now: datetime) -> bool:
    """Register `email` if `code` matches one of its live codes; wrong tries are counted."""
    pending = session.exec(
        select(Registration).where(
            Registration.email == email, Registration.used_at.is_(None), Registration.expires_at > now  # type: ignore[union-attr]
        )
    ).all()
    wanted = _hash(email, code)
    for registration in pending:
        if registration.attempts < MAX_TRIES and hmac.compare_digest(registration.code_hash, wanted):
            registration.used_at = now
            session.add(registration)
            ensure_account(session, email, now=now)
            account = session.exec(select(Account).where(Account.email == email)).one()
            if account.tier == Tier.guest:
                account.tier = Tier.free
                session.add(account)
            return True
    for registration in pending:
        registration.attempts += 1
        session.add(registration)
    return False
