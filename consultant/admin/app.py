"""The admin web app: `create_app` wires routes, templates, sessions and security headers.

Server-rendered HTML (Jinja2, autoescaped everywhere) and no JavaScript at
all, so the Content-Security-Policy can forbid every script. The reply's HTML
part is served on its own URL with a sandboxing CSP and shown in a sandboxed
iframe; everything else a sender wrote is escaped text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consultant.admin.auth import LoginThrottle, Sessions
from consultant.pipeline import utcnow
from consultant.quota import QuotaPolicy

HERE = Path(__file__).resolve().parent

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The reply's HTML part, framed by the case page: inline styles (emails need them), nothing else.
REPLY_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'; base-uri 'none'"


@dataclass(frozen=True)
class AdminConfig:
    secret: str = field(repr=False)
    address: str
    policy: QuotaPolicy = field(default_factory=QuotaPolicy)
    session_minutes: int = 480
    secure_cookies: bool = False
    poll_seconds: int = 60
    page_size: int = 25


@dataclass
class AdminState:
    engine: Engine
    config: AdminConfig
    sessions: Sessions
    throttle: LoginThrottle
    now: Callable[[], datetime]

    def render(self, request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
        html = templates().get_template(name).render(request_path=request.url.path, **context)
        return HTMLResponse(html, status_code=status_code)


@lru_cache(maxsize=1)
def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M") if value else ""
    return env


class SecurityHeaders:
    """Adds the security headers to every response that has not set its own."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", PAGE_CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        ]
        if https:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.headers if name not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"max-age=3600" if static else b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(engine: Engine, config: AdminConfig, *, now: Callable[[], datetime] = utcnow) -> Starlette:
    from consultant.admin.routes import routes

    app = Starlette(routes=routes())
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.admin = AdminState(
        engine=engine,
        config=config,
        sessions=Sessions(secret=config.secret, minutes=config.session_minutes, secure=config.secure_cookies),
        throttle=LoginThrottle(),
        now=now,
    )
    app.add_middleware(SecurityHeaders, https=config.secure_cookies)
    return app
