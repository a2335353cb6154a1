"""The composition root: the one place real IMAP/SMTP clients and the engine are built.

`open_engine` makes the engine, runs the migrations and loads the shipped
code sets on first start. `build_services` wires the pipeline for the
configured mailbox, or for the embedded one when no IMAP host is set.
`check_mail` connects once to each server so a wrong setting fails at start
with one clear line instead of on the first poll.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from consultant.db import make_engine, migrate
from consultant.errors import ConfigError, MailboxError, SendError
from consultant.inbox import ImapConfig, ImapInbox
from consultant.outbox import SmtpConfig, SmtpTransport
from consultant.pipeline import ReplyCaps, ReviewPolicy, Services
from consultant.quota import QuotaPolicy
from consultant.settings import Settings, imap_port, smtp_port

if TYPE_CHECKING:  # started only without a mail server: a worker on a real one never loads aiosmtpd (1.7 MB)
    from consultant.embedded import EmbeddedMail

log = logging.getLogger(__name__)


def open_engine(settings: Settings, *, load_codes: bool = True) -> Engine:
    try:
        engine = make_engine(settings.database_url)
        migrate(engine)
    except SQLAlchemyError as exc:
        raise ConfigError("CONSULTANT_DATABASE_URL", f"cannot open the database ({type(exc).__name__})") from None
    if load_codes:
        from consultant.codes.loader import ensure_codes_loaded

        ensure_codes_loaded(engine)
    return engine


def imap_config(settings: Settings, embedded: EmbeddedMail | None = None) -> ImapConfig:
    if embedded is not None:
        return embedded.imap_config()
    return ImapConfig(
        host=settings.imap_host,
        port=imap_port(settings),
        user=settings.imap_user,
        password=settings.imap_password,
        use_ssl=settings.imap_ssl,
        folder=settings.imap_folder,
        processed_folder=settings.imap_processed_folder,
        timeout=settings.imap_timeout,
    )


def smtp_config(settings: Settings, embedded: EmbeddedMail | None = None) -> SmtpConfig:
    if embedded is not None:
        return SmtpConfig(host="127.0.0.1", port=embedded.smtp_port, security="none", timeout=10.0)
    return SmtpConfig(
        host=settings.smtp_host,
        port=smtp_port(settings),
        security=settings.smtp_security,
        user=settings.smtp_user,
        password=settings.smtp_password,
        timeout=settings.smtp_timeout,
    )


def build_services(settings: Settings, engine: Engine, *, embedded: EmbeddedMail | None = None) -> Services:
    from consultant.match import build_matcher
    from consultant.match.helper import MatchHelper

    # the helper process loads the index itself; the worker then never holds it
    matcher = MatchHelper(engine) if settings.match_process else build_matcher(engine)
    return Services(
        engine=engine,
        inbox=ImapInbox(imap_config(settings, embedded)),
        transport=SmtpTransport(smtp_config(settings, embedded)),
        matcher=matcher,
        address=settings.address,
        policy=QuotaPolicy(guest_answers=settings.guest_answers, free_answers=settings.free_answers),
        batch_size=settings.imap_batch,
        send_attempts=settings.send_attempts,
        send_connections=settings.smtp_connections,
        review=ReviewPolicy(below_confidence=settings.review_below, no_codes=settings.review_no_codes),
        authserv_id=settings.authserv_id,
        caps=ReplyCaps(per_hour=settings.reply_cap_hour, per_day=settings.reply_cap_day),
        mailbox_name=settings.imap_folder,
    )


def check_mail(settings: Settings, embedded: EmbeddedMail | None = None) -> None:
    """Connect and log in once to IMAP and SMTP; ConfigError names the setting at fault."""
    inbox = ImapInbox(imap_config(settings, embedded))
    try:
        inbox.uidvalidity
    except MailboxError as exc:
        setting = "CONSULTANT_IMAP_PASSWORD" if "login" in str(exc) else "CONSULTANT_IMAP_HOST"
        raise ConfigError(setting, str(exc)) from None
    finally:
        inbox.close()
    transport = SmtpTransport(smtp_config(settings, embedded))
    try:
        transport.connect()
    except SendError as exc:
        setting = "CONSULTANT_SMTP_PASSWORD" if "login" in str(exc) else "CONSULTANT_SMTP_HOST"
        raise ConfigError(setting, str(exc)) from None
    finally:
        transport.close()
