"""What staff may do to sender accounts: register an address, change its plan, grant
answers, deactivate or reactivate it. Each action is recorded in the audit table.

Like review.py, these functions use the caller's session and never commit;
a request that cannot be carried out raises ReviewError for the page to show.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from consultant.models import Account, Tier
from consultant.review import ReviewError, record_audit

MAX_GRANT = 10_000


def _check_address(email: str) -> str:
    address = email.strip().lower()
    local, _, domain = address.partition("@")
    if not local or "." not in domain or "@" in domain or any(ch.isspace() or ord(ch) < 32 for ch in address):
        raise ReviewError(f"not an email address: {email!r}")
    if len(address) > 320:
        raise ReviewError("the address is too long")
    return address


def _tier(value: str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        raise ReviewError(f"unknown tier {value!r}") from None


def _count(value: str | int, *, name: str, low: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ReviewError(f"{name} must be a whole number") from None
    if not low <= number <= MAX_GRANT:
        raise ReviewError(f"{name} must be between {low} and {MAX_GRANT}")
    return number


def _get(session: Session, account_id: int) -> Account:
    # Locked, so two staff changing one account at once (two grants, say) both count.
    account = session.exec(
        select(Account).where(Account.id == account_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if account is None:
        raise ReviewError(f"there is no account #{account_id}")
    return account


def register_account(
    session: Session, email: str, *, tier: str = "free", extra_answers: str | int = 0, actor: str, now: datetime
) -> Account:
    """Register `email` (free or plan); a guest account with that address is upgraded in place."""
    address = _check_address(email)
    wanted, extra = _tier(tier), _count(extra_answers, name="extra answers")
    if wanted == Tier.guest:
        raise ReviewError("register as free or plan")
    account = session.exec(select(Account).where(Account.email == address)).first()
    if account is not None and account.tier != Tier.guest:
        raise ReviewError(f"{address} is already registered ({account.tier.value})")
    if account is None:
        account = Account(email=address, created_at=now)
    account.tier, account.extra_answers, account.active = wanted, extra, True
    session.add(account)
    record_audit(session, actor=actor, action="register_account", now=now, account_email=address,
                 detail=f"registered as {wanted.value} with {extra} extra answers")
    return account


def change_plan(
    session: Session, account_id: int, *, tier: str, extra_answers: str | int, actor: str, now: datetime
) -> Account:
    account = _get(session, account_id)
    before = f"{account.tier.value}, {account.extra_answers} extra"
    account.tier, account.extra_answers = _tier(tier), _count(extra_answers, name="extra answers")
    session.add(account)
    record_audit(session, actor=actor, action="change_plan", now=now, account_email=account.email,
                 detail=f"{before} -> {account.tier.value}, {account.extra_answers} extra")
    return account


def grant_answers(session: Session, account_id: int, count: str | int, *, actor: str, now: datetime) -> Account:
    account = _get(session, account_id)
    granted = _count(count, name="answers to grant", low=1)
    account.extra_answers = min(account.extra_answers + granted, MAX_GRANT)
    session.add(account)
    record_audit(session, actor=actor, action="grant_answers", now=now, account_email=account.email,
                 detail=f"+{granted} answers (extra now {account.extra_answers})")
    return account


def set_active(session: Session, account_id: int, active: bool, *, actor: str, now: datetime) -> Account:
    """A deactivated account gets no answers (charge_answer refuses it) until reactivated."""
    account = _get(session, account_id)
    account.active = active
    session.add(account)
    record_audit(session, actor=actor, action="reactivate" if active else "deactivate", now=now,
                 account_email=account.email)
    return account
