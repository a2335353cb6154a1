"""IMAP IDLE (RFC 2177): wake the poll job the moment mail arrives.

Polling every CONSULTANT_POLL_SECONDS makes a lone question wait half an
interval on average. `IdleWatcher` is a daemon thread with its own IMAP
connection, SELECTed read-only on the watched folder and waiting in IDLE.
When the server announces new mail (`* n EXISTS` or `* n RECENT`) it calls
`wake`, which moves the scheduler's poll job to now; the poll does all the
work, exactly as a scheduled one (lease, fetch, answer, acknowledge), so IDLE
adds no second path through the pipeline. Our own MOVE out of the folder
produces EXPUNGE responses, which do not wake anything.

Servers may drop an IDLE that lasts too long (RFC 2177: clients should
re-issue it at least every 29 minutes), so the watcher ends and restarts it
every `renew_seconds` (default 5 minutes); a connection that died silently
fails there at the latest. Mail that arrives during a renewal is announced
in the answer to DONE (or, RFC 2177 allows it, before the next IDLE is
accepted), and that wakes a poll too: dropping those responses lost one
wake in three in a stress run against Dovecot. A server that closes the connection is noticed
within a second (imapclient's `idle_check` hides the end of file, so the
watcher looks at the socket itself), and the watcher wakes a poll (mail may
have come unseen) and reconnects; so it does when a response reaches it in
pieces, which imaplib refuses while idle_check reads without waiting. A
refused login or a server without the IDLE capability is logged in one line
and retried with a growing delay (5 s to 5 minutes); the scheduled polls go
on regardless, so IDLE can only make answers faster, never stop them.
"""

from __future__ import annotations

import imaplib
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable

from imapclient import IMAPClient

from consultant.inbox import ImapConfig

log = logging.getLogger(__name__)

RENEW_SECONDS = 300.0
CHECK_SECONDS = 1.0  # how often the thread looks at its stop flag while idling
RETRY_FIRST, RETRY_MAX = 5.0, 300.0
STEADY_SECONDS = 10.0  # a connection that lasted less is a failure to retry later, not a drop
_NEW_MAIL = (b"EXISTS", b"RECENT")


class IdleWatcher(threading.Thread):
    """Calls `wake()` when the folder gets new mail; `stop()` ends it within CHECK_SECONDS."""

    def __init__(self, config: ImapConfig, wake: Callable[[], None], *, renew_seconds: float = RENEW_SECONDS) -> None:
        super().__init__(name="imap-idle", daemon=True)
        self.config = config
        self.wake = wake
        self.renew_seconds = renew_seconds
        self._stop_event = threading.Event()
        self.ready = threading.Event()  # set while an IDLE is running (tests and the bench wait on it)
        self._idled = False  # the current connection reached IDLE
        self._failing = False  # the last attempt failed: say so when IDLE works again

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        delay = RETRY_FIRST
        while not self._stop_event.is_set():
            self._idled = False
            connected_at = time.monotonic()
            try:
                self._watch()
            except _Resync as exc:
                log.info("IMAP IDLE: %s; woke a poll and reconnecting", exc)
                delay = RETRY_FIRST
                continue
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any server trouble
                self.ready.clear()
                if self._stop_event.is_set():
                    return  # stopping: the connection was closed under it on purpose
                if self._idled:
                    self.wake()  # it was listening until now: mail may have come unseen
                if self._idled and time.monotonic() - connected_at > STEADY_SECONDS:
                    log.info("IMAP IDLE connection lost (%s); reconnecting", type(exc).__name__)
                    delay = RETRY_FIRST
                    continue
                self._failing = True
                log.warning("IMAP IDLE unavailable (%s); polling only, retrying in %.0f s",
                            type(exc).__name__, delay)
                self._stop_event.wait(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _watch(self) -> None:
        """One connection: IDLE, renewed every `renew_seconds`, until stopped or broken."""
        cfg = self.config
        client = IMAPClient(
            cfg.host, port=cfg.port, ssl=cfg.use_ssl, timeout=cfg.timeout,
            ssl_context=cfg.ssl_context or (ssl.create_default_context() if cfg.use_ssl else None),
        )
        try:
            client.login(cfg.user, cfg.password)
            if not client.has_capability("IDLE"):
                raise RuntimeError("the server has no IDLE")
            client.select_folder(cfg.folder, readonly=True)
            while not self._stop_event.is_set():
                self._idle_once(client)
        finally:
            self.ready.clear()
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - closing a broken connection
                client.shutdown()

    def _idle_once(self, client: IMAPClient) -> None:
        try:
            client.idle()
        except imaplib.IMAP4.error as exc:
            if "Unexpected IDLE response" not in str(exc):
                raise
            # RFC 2177 lets a server send an untagged response (new mail during the renewal)
            # before it accepts the IDLE; imapclient refuses it and the IDLE's state is unknown.
            self.wake()
            raise _Resync("a response came before IDLE began") from exc
        self.ready.set()
        self._idled = True
        if self._failing:
            self._failing = False
            log.info("IMAP IDLE works again on %r", self.config.folder)
        started = time.monotonic()
        while not self._stop_event.is_set() and time.monotonic() - started < self.renew_seconds:
            try:
                responses = client.idle_check(timeout=CHECK_SECONDS)
            except imaplib.IMAP4.abort as exc:
                if "unterminated line" not in str(exc):
                    raise
                # idle_check reads without waiting, and imaplib refuses a line that has not
                # all arrived yet ("* 1 FETCH (" ...): pymap sends its responses to new mail in
                # pieces. The lines read with it are lost: take it as new mail, start afresh.
                self.wake()
                raise _Resync("a response came in pieces") from exc
            if _new_mail(responses):
                self.wake()
            elif not responses and _still_readable(client):
                raise ConnectionError("the server closed the IDLE connection")
        _, responses = client.idle_done()
        if _new_mail(responses):  # mail that came while the IDLE was being ended
            self.wake()


def _new_mail(responses: list) -> bool:  # type: ignore[type-arg]
    return any(len(r) > 1 and r[1] in _NEW_MAIL for r in responses)


class _Resync(Exception):
    """The connection's state is lost (a line read in pieces, a response before IDLE began):
    a poll has been woken; reconnect at once, without a failure's pause."""


def _still_readable(client: IMAPClient) -> bool:
    """idle_check reads every complete line there is and hides an end of file (imapclient
    swallows the EOF). A socket still readable after it gives nothing back has been closed
    by the server, or holds half a line; a reconnect is right for both."""
    readable, _, _ = select.select([client.socket()], [], [], 0)
    return bool(readable)
