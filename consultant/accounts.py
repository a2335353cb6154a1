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
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, select

from consultant.models import Account, Registration, Tier
from consultant.quota import ensure_account

CODE_TTL = timedelta(hours=24)
MAX_TRIES = 5


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
