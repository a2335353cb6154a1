"""`consultant admin`: the admin app from the settings, served by uvicorn.

The session key is CONSULTANT_ADMIN_SECRET. Left empty, a random key is made
on the first start and kept in `var/admin-secret` (readable by the owner
only), so sessions survive a restart without anybody choosing a weak key.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from consultant.admin.app import AdminConfig, create_app
from consultant.errors import ConfigError
from consultant.quota import QuotaPolicy
from consultant.settings import ADMIN_SECRET_MIN_LENGTH, Settings

log = logging.getLogger(__name__)

SECRET_FILE = Path("var/admin-secret")


def admin_secret(settings: Settings, *, path: Path = SECRET_FILE) -> str:
    """The configured key, else the one kept in `path` (made there on first use)."""
    if settings.admin_secret:
        return settings.admin_secret
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
            log.info("made a new admin session key in %s", path)
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < ADMIN_SECRET_MIN_LENGTH:
        raise ConfigError("CONSULTANT_ADMIN_SECRET", f"the key in {path} is too short; delete the file or set the variable")
    return value


def build_admin(settings: Settings, engine: Engine, *, secret_path: Path = SECRET_FILE) -> Starlette:
    config = AdminConfig(
        secret=admin_secret(settings, path=secret_path),
        address=settings.address,
        policy=QuotaPolicy(guest_answers=settings.guest_answers, free_answers=settings.free_answers),
        session_minutes=settings.session_minutes,
        secure_cookies=settings.admin_base_url.startswith("https://"),
        poll_seconds=settings.poll_seconds,
    )
    return create_app(engine, config)


def serve(settings: Settings, engine: Engine) -> None:
    import uvicorn

    app = build_admin(settings, engine)
    print(f"Admin pages on http://{settings.admin_host}:{settings.admin_port}/ (Ctrl-C to stop)")
    uvicorn.run(
        app,
        host=settings.admin_host,
        port=settings.admin_port,
        log_level=settings.log_level.lower(),
        server_header=False,
        log_config=None,
    )
