"""FETCH and ACKNOWLEDGE: the Inbox protocol, its IMAP implementation and an in-memory twin.

A message is known by `MailRef(mailbox, uidvalidity, uid)`. Fetching uses
`BODY.PEEK[]`, so nothing is marked read before it is handled; a message
larger than the size cap is fetched as its header only, so it can be
quarantined without being downloaded whole. Acknowledging moves handled
messages to the processed folder with one `UID MOVE` per batch, or with
COPY + \\Deleted + EXPUNGE where the server has no MOVE (pymap).

Every socket operation runs under a timeout; imaplib/socket errors become
`MailboxError` at this boundary. A server that says how long to wait
(Exchange Online's "Request is throttled. Suggested Backoff Time: N
milliseconds") has that wait carried on the error (`retry_after`), and the
poll waits at least as long (scheduling.poll).

A FETCH response that cannot be read (a server bug: an unbalanced quote or
parenthesis; imapclient's `ProtocolError`) must not block the mailbox. The
whole response was read before it failed to parse, so the connection is
still in step: the batch is fetched again one message at a time, and a
message whose own response still fails is handed on as `unreadable`, to be
quarantined for staff (it stays on the server, in the processed folder)
while the rest are answered.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError, ProtocolError
from imapclient.util import to_bytes

from consultant.errors import MailboxError
from consultant.faults import crash_point

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class MailRef:
    mailbox: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class FetchedMessage:
    ref: MailRef
    raw: bytes
    size: int
    truncated: bool = False  # only the header was fetched (over the size cap)
    known: bool = False  # recorded before: no body fetched, listed so it is acknowledged once closed
    unreadable: bool = False  # the server's response for it could not be parsed, alone or in its batch


# Which of these refs are recorded already (cases.recorded); new mail behind them is fetched instead.
Known = Callable[[list["MailRef"]], set["MailRef"]]
SCAN_BATCHES = 3  # how many batches' worth of UIDs are looked at for new mail behind recorded ones


class Inbox(Protocol):
    def fetch_batch(self, limit: int, known: Known | None = None) -> list[FetchedMessage]: ...

    def acknowledge(self, refs: list[MailRef]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    use_ssl: bool
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    timeout: float = 30.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)


class ImapInbox:
    """An IMAP mailbox through imapclient; connect on first use, reuse after."""

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self._client: IMAPClient | None = None
        self._uidvalidity = 0

    # -- connection -------------------------------------------------------
    def _connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        cfg = self.config
        try:
            client = IMAPClient(
                cfg.host,
                port=cfg.port,
                ssl=cfg.use_ssl,
                ssl_context=cfg.ssl_context or (ssl.create_default_context() if cfg.use_ssl else None),
                timeout=cfg.timeout,
            )
        except (OSError, IMAPClientError) as exc:
            raise _error(f"cannot reach IMAP server {cfg.host}:{cfg.port}", exc) from None
        try:
            client.login(cfg.user, cfg.password)
        except LoginError:
            _quietly_logout(client)
            raise MailboxError("IMAP login refused for CONSULTANT_IMAP_USER (check the user and password)") from None
        except (OSError, IMAPClientError) as exc:
            _quietly_logout(client)
            raise _error("IMAP login failed", exc) from None
        try:
            _ensure_folder(client, cfg.processed_folder)
            self._select(client)
        except (OSError, IMAPClientError) as exc:
            _quietly_logout(client)
            raise _error(f"cannot open IMAP folder {cfg.folder!r}", exc) from None
        self._client = client
        return client

    def _select(self, client: IMAPClient) -> None:
        """SELECT the folder and note its UIDVALIDITY; a change means the folder was recreated."""
        selected = client.select_folder(self.config.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        if self._uidvalidity and uidvalidity != self._uidvalidity:
            log.warning("IMAP folder %r has a new UIDVALIDITY; known messages are matched by Message-ID "
                        "and content", self.config.folder)
        self._uidvalidity = uidvalidity

    def close(self) -> None:
        if self._client is not None:
            _quietly_logout(self._client)
            self._client = None

    def _fail(self, what: str, exc: BaseException) -> MailboxError:
        # A broken connection is dropped so the next poll starts clean. No LOGOUT:
        # on a stalled server it would wait out the timeout a second time.
        if self._client is not None:
            _quietly_shutdown(self._client)
            self._client = None
        return _error(f"IMAP {what} failed", exc)

    # -- protocol ---------------------------------------------------------
    @property
    def uidvalidity(self) -> int:
        self._connect()
        return self._uidvalidity

    def fetch_batch(self, limit: int, known: Known | None = None) -> list[FetchedMessage]:
        """Up to `limit` messages, oldest first. With `known`, messages recorded before are
        skipped (listed without their bodies) and new mail behind them is fetched instead."""
        client = self._connect()
        try:
            # SELECT again on every poll, not NOOP: a folder deleted and recreated under a
            # reused connection can otherwise stay selected as an empty ghost (Dovecot does).
            self._select(client)
            uids, old = _new_first(sorted(client.search(["UNDELETED"])), limit, known, self.config.folder,
                                   self._uidvalidity)
            if not uids:
                return old
            unreadable: set[int] = set()
            sizes = _fetch_each(client, uids, "RFC822.SIZE", unreadable)
            small = [u for u in uids if u not in unreadable
                     and sizes.get(u, {}).get(b"RFC822.SIZE", 0) <= self.config.max_message_bytes]
            large = [u for u in uids if u not in unreadable and u not in set(small)]
            bodies = _fetch_each(client, small, "BODY.PEEK[]", unreadable)
            headers = _fetch_each(client, large, "BODY.PEEK[HEADER]", unreadable)
        except (TimeoutError, OSError, IMAPClientError) as exc:
            raise self._fail("fetch", exc) from None
        messages = []
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            ref = MailRef(self.config.folder, self._uidvalidity, uid)
            if uid in unreadable:
                messages.append(FetchedMessage(ref, b"", size, unreadable=True))
            elif uid in bodies and b"BODY[]" in bodies[uid]:
                messages.append(FetchedMessage(ref, bytes(bodies[uid][b"BODY[]"]), size))
            elif uid in headers and b"BODY[HEADER]" in headers[uid]:
                messages.append(FetchedMessage(ref, bytes(headers[uid][b"BODY[HEADER]"]), size, truncated=True))
            # A UID that vanished between SEARCH and FETCH is simply gone.
        return messages + old

    def acknowledge(self, refs: list[MailRef]) -> None:
        if not refs:
            return
        client = self._connect()
        uids = [r.uid for r in refs if r.uidvalidity == self._uidvalidity]
        if not uids:
            return
        try:
            if client.has_capability("MOVE"):
                client.move(uids, self.config.processed_folder)
                crash_point("during_ack")
                return
            client.copy(uids, self.config.processed_folder)
            crash_point("during_ack")  # copied, not yet expunged: the next poll sees them again
            client.add_flags(uids, [b"\\Deleted"], silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)
            else:
                client.expunge()
        except (TimeoutError, OSError, IMAPClientError) as exc:
            raise self._fail("acknowledge", exc) from None

    def append(self, raw: bytes, folder: str | None = None) -> None:
        """Deliver a message into the mailbox (used by `ask` and the embedded server)."""
        client = self._connect()
        try:
            client.append(folder or self.config.folder, to_bytes(raw))
        except (OSError, IMAPClientError) as exc:
            raise self._fail("append", exc) from None


def _fetch_each(client: IMAPClient, uids: list[int], item: str, unreadable: set[int]) -> dict:
    """FETCH `item` for `uids` in one command; when the response cannot be parsed, one UID at a
    time, adding those whose own response cannot be parsed either to `unreadable`."""
    if not uids:
        return {}
    try:
        return client.fetch(uids, [item])
    except ProtocolError:
        log.warning("IMAP: a FETCH response for %d messages could not be read; fetching them one by one", len(uids))
    found: dict = {}
    for uid in uids:
        try:
            found.update(client.fetch([uid], [item]))
        except ProtocolError:
            log.warning("uid %s: the server's FETCH response cannot be read; quarantined as unreadable", uid)
            unreadable.add(uid)
    return found


def _ensure_folder(client: IMAPClient, name: str) -> None:
    """Create `name` unless it exists; a worker starting beside us may create it first."""
    if client.folder_exists(name):
        return
    try:
        client.create_folder(name)
    except IMAPClientError:
        if not client.folder_exists(name):  # ALREADYEXISTS from a race is fine; anything else is not
            raise


def _new_first(
    uids: list[int], limit: int, known: Known | None, folder: str, uidvalidity: int
) -> tuple[list[int], list[FetchedMessage]]:
    """The UIDs to fetch (the first `limit` not recorded yet) and the recorded ones before
    them, as bodiless FetchedMessages (they stay in the folder until their cases close)."""
    if known is None:
        return uids[:limit], []
    head = uids[: limit * SCAN_BATCHES]
    recorded = {ref.uid for ref in known([MailRef(folder, uidvalidity, u) for u in head])}
    fresh = [u for u in head if u not in recorded][:limit]
    last = fresh[-1] if fresh else (head[-1] if head else 0)
    old = [FetchedMessage(MailRef(folder, uidvalidity, u), b"", 0, known=True) for u in head
           if u in recorded and u <= last]
    return fresh, old


def _quietly_shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001 - the connection is being thrown away anyway
        pass


def _quietly_logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - the connection is being thrown away anyway
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _error(doing: str, exc: BaseException) -> MailboxError:
    said = _describe(exc)
    return MailboxError(f"{doing}: {said}", retry_after=server_backoff(said))


_SUGGESTED_BACKOFF = re.compile(r"suggested\s+backoff\s+time:\s*(\d{1,9})\s*(?:ms\b|milliseconds?\b)?", re.IGNORECASE)


def server_backoff(said: str) -> timedelta | None:
    """The wait a throttling server asks for in its answer, if it names one."""
    found = _SUGGESTED_BACKOFF.search(said)
    return timedelta(milliseconds=int(found.group(1))) if found else None


class MemoryInbox:
    """The in-memory twin: a list of raw messages with UIDs, for unit tests."""

    def __init__(self, folder: str = "INBOX", uidvalidity: int = 1) -> None:
        self.folder = folder
        self.uidvalidity = uidvalidity
        self.messages: dict[int, bytes] = {}
        self.processed: dict[int, bytes] = {}
        self._next_uid = 1
        self.closed = False

    def deliver(self, raw: bytes) -> int:
        uid = self._next_uid
        self._next_uid += 1
        self.messages[uid] = raw
        return uid

    def fetch_batch(self, limit: int, known: Known | None = None) -> list[FetchedMessage]:
        uids, old = _new_first(sorted(self.messages), limit, known, self.folder, self.uidvalidity)
        return [
            FetchedMessage(MailRef(self.folder, self.uidvalidity, u), self.messages[u], len(self.messages[u]))
            for u in uids
        ] + old

    def acknowledge(self, refs: list[MailRef]) -> None:
        for ref in refs:
            if ref.uidvalidity == self.uidvalidity and ref.uid in self.messages:
                self.processed[ref.uid] = self.messages.pop(ref.uid)

    def close(self) -> None:
        self.closed = True
