"""SEND: the Transport protocol, its SMTP implementation, an in-memory twin, and the drain.

Replies are written to the `outbox` table (in the same transaction that
records the case's outcome) before any SMTP traffic. `deliver_pending`
drains due rows over one reused SMTP connection: a row is marked sent
only after the server accepted it; a 4xx or network error schedules a
retry with exponential backoff; a 5xx marks it failed at once.

Three failures are told apart because they call for different things:

* `SmtpUnavailable`: we could not connect, start TLS or log in. No message
  is at fault, so the row is retried and the drain stops there (the other
  rows wait for the next poll instead of each timing out in turn).
* `AmbiguousSendError`: the whole message went out after DATA and then the
  connection failed or timed out before the server's reply (RFC 1047). The
  server may have it. The row keeps `sending_since`, so the retry resends
  the identical bytes (same Message-ID) and flags the case
  `resent_after_crash`, exactly as after a crash in the same window.
* anything else 4xx or network: a plain retry; 5xx: failed, no retry.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from consultant.cases import flag_case
from consultant.db import session_scope
from consultant.errors import PermanentSendError, SendError
from consultant.faults import crash_point
from consultant.lease import Claim
from consultant.models import Case, CaseStatus, Outbox, OutboxStatus
from consultant.prepared import Prepared, typed_param

log = logging.getLogger(__name__)

OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
CASE = Case.__table__  # type: ignore[attr-defined]
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=2)


class SmtpUnavailable(SendError):
    """No SMTP session could be opened (connect, STARTTLS, certificate, login)."""


class AmbiguousSendError(SendError):
    """The message was sent in full, then no reply came: the server may have it."""


class Transport(Protocol):
    def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str = "starttls"  # none, starttls, ssl
    user: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)


class _DataWatch:
    """Notes when a message's final "." has gone out: from then on a failure is ambiguous."""

    data_sent = False

    def send(self, s: bytes | str) -> None:
        super().send(s)  # type: ignore[misc]
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.data_sent = True
            crash_point("after_data_sent")


class _SMTP(_DataWatch, smtplib.SMTP):
    pass


class _SMTPSSL(_DataWatch, smtplib.SMTP_SSL):
    pass


class SmtpTransport:
    """smtplib with certificate verification and timeouts; one connection reused."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: _SMTP | _SMTPSSL | None = None
        self._context: ssl.SSLContext | None = None

    def connect(self) -> _SMTP | _SMTPSSL:
        if self._smtp is not None:
            return self._smtp
        cfg = self.config
        # Loading the CA bundle costs 10-20 ms: only for TLS, and once per transport
        # (deliver_pending closes the connection after every drain).
        if cfg.security != "none" and self._context is None:
            self._context = cfg.ssl_context or ssl.create_default_context()
        context = self._context
        smtp: _SMTP | _SMTPSSL | None = None
        try:
            if cfg.security == "ssl":
                smtp = _SMTPSSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
            else:
                smtp = _SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
                if cfg.security == "starttls":
                    # No STARTTLS offered, or a certificate that fails: refused, never plaintext.
                    smtp.starttls(context=context)
            if cfg.user:
                smtp.login(cfg.user, cfg.password)
        except smtplib.SMTPAuthenticationError:
            # Our configuration is at fault, not the message: retry later, keep the outbox.
            _drop(smtp)
            raise SmtpUnavailable("SMTP login refused for CONSULTANT_SMTP_USER") from None
        except (OSError, smtplib.SMTPException) as exc:
            _drop(smtp)
            raise SmtpUnavailable(f"cannot connect to SMTP server {cfg.host}:{cfg.port}: {_describe(exc)}") from None
        self._smtp = smtp
        return smtp

    def another(self) -> SmtpTransport:
        """A transport with the same settings and a connection of its own."""
        return SmtpTransport(self.config)

    def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None:
        smtp = self.connect()
        smtp.data_sent = False
        try:
            refused = smtp.sendmail(sender, recipients, raw)
        except smtplib.SMTPResponseException as exc:
            self._reset_after(exc)
            if 500 <= exc.smtp_code < 600:
                raise PermanentSendError(f"SMTP {exc.smtp_code}: {_describe(exc)}") from None
            raise SendError(f"SMTP {exc.smtp_code}: {_describe(exc)}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            replies = list(exc.recipients.values())
            codes = [code for code, _ in replies]
            said = _reply_text(replies[0]) if replies else ""
            self._reset_after(exc)
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentSendError(f"SMTP {codes[0]}: recipient refused: {said}") from None
            raise SendError(f"SMTP {codes[0] if codes else 0}: recipient refused (temporary): {said}") from None
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            ambiguous = smtp.data_sent
            self.close()
            if ambiguous:
                raise AmbiguousSendError(f"no reply after the message was sent: {_describe(exc)}") from None
            raise SendError(f"SMTP send failed: {_describe(exc)}") from None
        if refused:
            raise PermanentSendError("SMTP refused some recipients")

    def _reset_after(self, _exc: BaseException) -> None:
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None


def _drop(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass


def _reply_text(reply: tuple[int, bytes | str]) -> str:
    text = reply[1].decode("utf-8", "replace") if isinstance(reply[1], bytes) else str(reply[1])
    return " ".join(text.split())[:200]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


@dataclass
class SentMessage:
    raw: bytes
    sender: str
    recipients: list[str]


class MemoryTransport:
    """The in-memory twin: collects messages; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[SentMessage] = []
        self.fail_with: Exception | None = None

    def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(SentMessage(raw, sender, list(recipients)))

    def close(self) -> None:
        pass


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failures: 30 s, 1 min, 2 min ... capped."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


CLAIM_TTL = timedelta(minutes=5)
_CLAIM = Claim(OUTBOX, (OUTBOX.c.status == OutboxStatus.pending)
               & (OUTBOX.c.next_attempt_at <= typed_param("p_now", OUTBOX.c.next_attempt_at)))


def claim_outbox(engine: Engine, *, holder: str, limit: int, now: datetime) -> list[int]:
    """Claim due rows for `holder` (SKIP LOCKED on PostgreSQL; IMMEDIATE on SQLite)."""
    # a worker killed mid-send is provably dead: its rows are free at once
    return _CLAIM.run(engine, holder=holder, limit=limit, ttl=CLAIM_TTL, now=now)


def deliver_pending(
    engine: Engine,
    transport: Transport,
    *,
    sender: str,
    now: datetime,
    max_attempts: int = 6,
    limit: int = 500,
    holder: str = "local",
    keep_open: bool = False,
) -> dict[str, int]:
    """Claim and send every due outbox row; returns counts of sent, retry and failed.
    The SMTP connection is closed at the end unless `keep_open` (BackgroundSender)."""
    counts = {"sent": 0, "retry": 0, "failed": 0, "skipped": 0}
    claimed = claim_outbox(engine, holder=holder, limit=limit, now=now)
    if not claimed:
        return counts
    accepted: _Accepted | None = None  # the server took it; marked sent with the next row's start
    try:
        for done, outbox_id in enumerate(claimed):
            outcome, accepted = _deliver_one(engine, transport, outbox_id, sender=sender, now=now,
                                             max_attempts=max_attempts, holder=holder, accepted=accepted)
            if outcome == "unavailable":
                counts["retry"] += 1
                release_outbox_claims(engine, claimed[done + 1:], holder=holder, now=now)
                break
            counts[outcome] += 1
    finally:
        try:
            if accepted is not None:
                with engine.begin() as conn:
                    _mark_sent(conn, accepted, now)
                _sent(accepted)
        finally:
            if not keep_open:
                transport.close()
    return counts


class BackgroundSender:
    """SEND on threads of its own, so replies go out while the next questions are matched.

    `consultant run` uses it: the answering path wakes it (`wake`) as replies are
    committed, and it drains the due rows with `deliver_pending`, each thread over
    a connection of its own (`CONSULTANT_SMTP_CONNECTIONS`), kept open while there
    is work and closed after IDLE_CLOSE seconds without any. A thread claims
    CLAIM rows at a time, so that the connections share a burst, and claims again
    at once after a full claim; otherwise it looks for due retries every second.
    The rows, claims, `sending_since` and crash points are exactly those of the
    inline drain, so crash safety is unchanged: each connection has at most one
    message in the window between the server's reply and our commit. Threads
    overlap the SMTP round trips with matching and with each other: one connection
    fell behind the answering once the answering no longer waited for IMAP (the
    last quarter of a round's replies went out after the last answer). When the
    SMTP server is unavailable a thread pauses 1, 2, 4 ... up to 60 s between
    attempts; any other error is logged by its type and the loop goes on.
    """

    IDLE_CLOSE = 5.0
    PAUSE_MAX = 60.0
    CLAIM = 10

    def __init__(self, engine: Engine, transports: list[Transport], *, sender: str, holder: str,
                 max_attempts: int = 6) -> None:
        self.engine = engine
        self.sender = sender
        self.holder = holder
        self.max_attempts = max_attempts
        self._stop = threading.Event()
        self._wakes = [threading.Event() for _ in transports]
        self._sent = [0] * len(transports)
        self._threads = [
            threading.Thread(target=self._run, args=(n, transport), name=f"smtp-sender-{n + 1}", daemon=True)
            for n, transport in enumerate(transports)
        ]

    @property
    def sent(self) -> int:
        return sum(self._sent)

    def start(self) -> BackgroundSender:
        for thread in self._threads:
            thread.start()
        return self

    def wake(self) -> None:
        for wake in self._wakes:
            wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the messages being sent, then stop (the rest waits in the outbox)."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _run(self, slot: int, transport: Transport) -> None:
        wake = self._wakes[slot]
        idle_since: float | None = None
        pause = 1.0
        while not self._stop.is_set():
            wake.wait(1.0)
            wake.clear()
            try:
                counts = deliver_pending(self.engine, transport, sender=self.sender, now=datetime.now(UTC),
                                         max_attempts=self.max_attempts, holder=self.holder, keep_open=True,
                                         limit=self.CLAIM)
            except Exception as exc:  # noqa: BLE001 - the sender must outlive a database outage
                log.warning("sending failed (%s); retrying", type(exc).__name__)
                counts = {"sent": 0, "retry": 1}
            self._sent[slot] += counts.get("sent", 0)
            if counts.get("retry") and not counts.get("sent"):
                transport.close()
                self._stop.wait(pause)
                pause = min(pause * 2, self.PAUSE_MAX)
                continue
            pause = 1.0
            if sum(counts.values()) >= self.CLAIM:
                wake.set()  # a full claim: more may be due
            if any(counts.values()):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.IDLE_CLOSE:
                transport.close()
        transport.close()


def release_outbox_claims(engine: Engine, ids: list[int], *, holder: str, now: datetime) -> None:
    """Give back claims this drain will not use, so the next poll (any worker) can take them."""
    _CLAIM.release(engine, ids, holder=holder, now=now)


# Built once and run on the driver's cursor: the send path runs these for every reply
# (consultant/prepared.py, docs/BENCHMARKS.md).
_READ_FOR_SEND = Prepared(
    select(OUTBOX.c.status, OUTBOX.c.claimed_by, OUTBOX.c.sending_since, OUTBOX.c.case_id, OUTBOX.c.raw,
           OUTBOX.c.recipient)
    .where(OUTBOX.c.id == bindparam("p_id"))
    .with_for_update()
)
_MARK_SENDING = Prepared(update(OUTBOX).where(OUTBOX.c.id == bindparam("p_id")).values(
    sending_since=typed_param("p_now", OUTBOX.c.sending_since)
))
_MARK_SENT = Prepared(update(OUTBOX).where(OUTBOX.c.id == bindparam("p_id")).values(
    status=OutboxStatus.sent, sent_at=typed_param("p_now", OUTBOX.c.sent_at),
    attempts=OUTBOX.c.attempts + 1, sending_since=None,
))
_CASE_REPLIED = Prepared(update(CASE).where(CASE.c.id == bindparam("p_id"), CASE.c.replied_at.is_(None)).values(
    replied_at=typed_param("p_now", CASE.c.replied_at)
))


@dataclass(frozen=True)
class _Accepted:
    """A message the SMTP server accepted, not yet marked sent."""

    outbox_id: int
    case_id: int | None


def _deliver_one(
    engine: Engine, transport: Transport, outbox_id: int, *, sender: str, now: datetime, max_attempts: int,
    holder: str, accepted: _Accepted | None = None,
) -> tuple[str, _Accepted | None]:
    """Send one claimed row. `accepted`, the message sent just before, is marked sent in the
    transaction that marks this row as being sent: one commit per message instead of two.
    The ambiguous window is unchanged: the earlier message is marked sent before this one's
    SMTP conversation starts, and this one is marked as being sent before it does."""
    with engine.begin() as conn:
        if accepted is not None:
            _mark_sent(conn, accepted, now)
        row = _READ_FOR_SEND.run(conn, {"p_id": outbox_id}).first()
        mine = row is not None and row.status == OutboxStatus.pending and row.claimed_by == holder
        if mine:
            if row.sending_since is not None and row.case_id is not None:
                # An earlier attempt died after handing the message to SMTP but before
                # recording the outcome: the server may have it. Resend the identical
                # message (same Message-ID) once, and say so on the case.
                flag_case(conn, row.case_id, "resent_after_crash")
            _MARK_SENDING.run(conn, {"p_id": outbox_id, "p_now": now})
    if accepted is not None:
        _sent(accepted)
    if not mine:
        return "skipped", None
    try:
        transport.send(row.raw, sender=sender, recipients=[row.recipient])
    except SmtpUnavailable as exc:
        _record_failure(engine, outbox_id, str(exc), now=now, permanent=False, max_attempts=max_attempts)
        log.warning("outbox %s: SMTP unavailable; sending paused until the next poll", outbox_id)
        return "unavailable", None
    except AmbiguousSendError as exc:
        outcome = _record_failure(engine, outbox_id, str(exc), now=now, permanent=False,
                                  max_attempts=max_attempts, ambiguous=True)
        log.warning("outbox %s: no reply after the message was sent; will resend the same message", outbox_id)
        return outcome, None
    except PermanentSendError as exc:
        _record_failure(engine, outbox_id, str(exc), now=now, permanent=True, max_attempts=max_attempts)
        log.warning("outbox %s: permanent send failure", outbox_id)
        return "failed", None
    except SendError as exc:
        outcome = _record_failure(engine, outbox_id, str(exc), now=now, permanent=False, max_attempts=max_attempts)
        log.info("outbox %s: send failed, %s", outbox_id, outcome)
        return outcome, None
    crash_point("after_smtp_accept")
    return "sent", _Accepted(outbox_id, row.case_id)


def _mark_sent(conn: Connection, accepted: _Accepted, now: datetime) -> None:
    _MARK_SENT.run(conn, {"p_id": accepted.outbox_id, "p_now": now})
    if accepted.case_id is not None:
        _CASE_REPLIED.run(conn, {"p_id": accepted.case_id, "p_now": now})


def _sent(accepted: _Accepted) -> None:
    """After the commit that marked it sent."""
    crash_point("after_mark_sent")
    log.info("outbox %s: sent", accepted.outbox_id)


def _record_failure(
    engine: Engine, outbox_id: int, error: str, *, now: datetime, permanent: bool, max_attempts: int,
    ambiguous: bool = False,
) -> str:
    with session_scope(engine) as session:
        row = session.get(Outbox, outbox_id)
        assert row is not None
        row.attempts += 1
        row.last_error = error[:500]
        if not ambiguous:
            row.sending_since = None  # kept when the server may have it: the retry is then flagged
        row.claimed_until = None
        if permanent or row.attempts >= max_attempts:
            row.status = OutboxStatus.failed
            if row.case_id is not None:
                case = session.get(Case, row.case_id)
                if case is not None:
                    case.status = CaseStatus.failed
                    case.error = f"send failed: {error[:300]}"
                    case.updated_at = now
                    session.add(case)
            outcome = "failed"
        else:
            row.next_attempt_at = now + backoff(row.attempts)
            outcome = "retry"
        session.add(row)
    return outcome
