"""Staff logins for the admin pages: create an account, check a password.

Passwords are hashed with Argon2id (argon2-cffi, its default parameters);
only the hash is stored. `verify_staff` spends the same hashing work whether
or not the address exists, so response time does not tell which addresses
are staff, and it rehashes transparently when the parameters change.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from consultant.models import StaffUser

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


class StaffError(ValueError):
    """A staff account cannot be created as asked (bad address, weak password, exists)."""


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("not a password anybody has")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise StaffError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def create_staff(session: Session, email: str, password: str, *, now: datetime) -> StaffUser:
    """Add a staff login; StaffError if the address is not one or already has a login."""
    address = normalize_email(email)
    local, _, domain = address.partition("@")
    if not local or not domain or "@" in domain or any(ch.isspace() for ch in address):
        raise StaffError(f"not an email address: {email!r}")
    check_password_rules(password)
    if session.exec(select(StaffUser).where(StaffUser.email == address)).first() is not None:
        raise StaffError(f"{address} already has a staff login")
    user = StaffUser(email=address, password_hash=hash_password(password), created_at=now)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, email: str, password: str) -> StaffUser:
    """Give an existing staff login a new password (which also ends its sessions)."""
    check_password_rules(password)
    user = session.exec(select(StaffUser).where(StaffUser.email == normalize_email(email))).first()
    if user is None:
        raise StaffError(f"{email} has no staff login")
    user.password_hash = hash_password(password)
    session.add(user)
    return user


def verify_staff(session: Session, email: str, password: str, *, now: datetime) -> StaffUser | None:
    """The active staff user with this address and password, or None; records the login time."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    user = session.exec(select(StaffUser).where(StaffUser.email == normalize_email(email))).first()
    stored = user.password_hash if user is not None else _dummy_hash()
    try:
        _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    session.add(user)
    return user


def password_fingerprint(user: StaffUser) -> str:
    """A short digest of the stored hash: sessions carry it, so a new password ends them."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]
