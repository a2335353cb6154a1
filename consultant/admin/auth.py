"""Staff sessions, CSRF tokens and the login throttle.

A session is a signed cookie (itsdangerous, keyed by CONSULTANT_ADMIN_SECRET)
holding the staff id, a random session id, the session's CSRF token, its
expiry and a fingerprint of the password hash. It is accepted only while

* the signature is good and the expiry (login time + session minutes) is ahead,
* the staff login still exists, is active and has the same password,
* the session id was not logged out (logouts are remembered in this process
  until the session would have expired anyway).

The cookie is HttpOnly and SameSite=Strict, and Secure (with the __Host-
prefix) when the admin is served over https. Every form carries the CSRF
token; the login form, before there is a session, carries a token that is
also in a short-lived signed cookie (double submit).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from consultant.models import StaffUser
from consultant.staff import password_fingerprint

LOGIN_COOKIE_SECONDS = 3600
FLASH_SECONDS = 120


@dataclass(frozen=True)
class StaffSession:
    staff_id: int
    email: str
    sid: str
    csrf: str
    expires: float  # epoch seconds


@dataclass
class Sessions:
    """Issue and check session, login and flash cookies."""

    secret: str = field(repr=False)
    minutes: int = 480
    secure: bool = False
    _revoked: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def cookie_name(self) -> str:
        return "__Host-cc_session" if self.secure else "cc_session"

    def _signer(self, purpose: str) -> URLSafeSerializer:
        return URLSafeSerializer(self.secret, salt=f"consultant-admin-{purpose}")

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure, httponly=True,
                            samesite="strict")

    # -- the session ----------------------------------------------------------
    def start(self, response: Response, user: StaffUser, *, now: datetime) -> StaffSession:
        assert user.id is not None
        session = StaffSession(
            staff_id=user.id,
            email=user.email,
            sid=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(24),
            expires=now.timestamp() + self.minutes * 60,
        )
        payload = {"u": user.id, "s": session.sid, "c": session.csrf, "x": session.expires,
                   "p": password_fingerprint(user)}
        self._set(response, self.cookie_name, self._signer("session").dumps(payload), self.minutes * 60)
        return session

    def read(self, request: Request, engine: Engine, *, now: datetime) -> StaffSession | None:
        """The request's valid session, or None. Touches the database (call it off the event loop)."""
        raw = request.cookies.get(self.cookie_name)
        if not raw:
            return None
        try:
            payload = self._signer("session").loads(raw)
            staff_id, sid, csrf, expires, fingerprint = (payload[k] for k in ("u", "s", "c", "x", "p"))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if not isinstance(expires, (int, float)) or expires <= now.timestamp() or self.is_revoked(sid):
            return None
        with Session(engine) as db:
            user = db.get(StaffUser, staff_id)
            if user is None or not user.active or not hmac.compare_digest(password_fingerprint(user), str(fingerprint)):
                return None
            return StaffSession(staff_id=staff_id, email=user.email, sid=str(sid), csrf=str(csrf), expires=expires)

    def end(self, response: Response, session: StaffSession | None, *, now: datetime) -> None:
        if session is not None:
            with self._lock:
                for sid in [s for s, until in self._revoked.items() if until < now.timestamp()]:
                    del self._revoked[sid]
                self._revoked[session.sid] = session.expires
        response.delete_cookie(self.cookie_name, path="/", secure=self.secure, httponly=True, samesite="strict")

    def is_revoked(self, sid: str) -> bool:
        with self._lock:
            return sid in self._revoked

    # -- the login form's CSRF token (there is no session yet) ---------------
    @staticmethod
    def new_login_token() -> str:
        return secrets.token_urlsafe(24)

    def remember_login_token(self, response: Response, token: str) -> None:
        self._set(response, "cc_login", self._signer("login").dumps(token), LOGIN_COOKIE_SECONDS)

    def forget_login_token(self, response: Response) -> None:
        response.delete_cookie("cc_login", path="/", secure=self.secure, httponly=True, samesite="strict")

    def check_login_token(self, request: Request, submitted: str) -> bool:
        try:
            expected = self._signer("login").loads(request.cookies.get("cc_login", ""))
        except BadSignature:
            return False
        return isinstance(expected, str) and bool(submitted) and hmac.compare_digest(expected, submitted)

    # -- one-shot messages after a redirect ----------------------------------
    def flash(self, response: Response, text: str, *, kind: str = "ok", now: datetime) -> None:
        payload = {"t": text[:500], "k": kind, "x": now.timestamp() + FLASH_SECONDS}
        self._set(response, "cc_flash", self._signer("flash").dumps(payload), FLASH_SECONDS)

    def read_flash(self, request: Request, *, now: datetime) -> tuple[str, str] | None:
        """(text, "ok" or "error") left by the last action, if any; `clear_flash` removes it."""
        raw = request.cookies.get("cc_flash")
        if not raw:
            return None
        try:
            payload = self._signer("flash").loads(raw)
            if payload["x"] < now.timestamp():
                return None
            return str(payload["t"]), "error" if payload["k"] == "error" else "ok"
        except (BadSignature, KeyError, TypeError):
            return None

    def clear_flash(self, request: Request, response: Response) -> None:
        if "cc_flash" in request.cookies:
            response.delete_cookie("cc_flash", path="/", secure=self.secure, httponly=True, samesite="strict")


def csrf_ok(session: StaffSession, submitted: object) -> bool:
    return isinstance(submitted, str) and bool(submitted) and hmac.compare_digest(session.csrf, submitted)


@dataclass
class LoginThrottle:
    """At most `tries` failed logins per address and per client in `window`; then wait."""

    tries: int = 5
    window: timedelta = timedelta(minutes=15)
    _failures: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] < now - self.window.total_seconds():
            times.popleft()
        return times

    def blocked(self, keys: list[str], *, now: datetime) -> bool:
        with self._lock:
            return any(len(self._recent(key, now.timestamp())) >= self.tries for key in keys)

    def failed(self, keys: list[str], *, now: datetime) -> None:
        with self._lock:
            for key in keys:
                self._recent(key, now.timestamp()).append(now.timestamp())

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
