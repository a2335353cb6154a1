"""MATCH in a helper process: a worker's second core.

A worker is one Python process, and Python runs one thread at a time. On the
2-core machines of docs/BENCHMARKS.md a busy worker kept one core busy and
left most of the other idle, and matching was about two fifths of that
core. `MatchHelper` is a `Matcher` that runs the `CodeMatcher` in a child
process instead, and the answering loop tells it, a chunk ahead, which
questions it will ask about:

    prefetch(texts)   the questions of the cases just claimed: sent to the
                      child at once, matched while the worker answers the
                      chunk before (parse, quota, render, database, SMTP)
    match(text)       the prefetched result, waiting for it if need be; a
                      text never prefetched is sent and waited for
    classify_ahead(messages) / classified(ticket)
                      a fetched batch's parsing and sorting (`classify.py`),
                      started when the mailbox lease holder fetches it and
                      collected when it records it, a few chunks later
    classified_ready(ticket)
                      whether that batch is back, without waiting: the
                      worker records it then, and waits for it only when
                      it has nothing else to answer

The child is a new interpreter (`python -m consultant.match.helper`), not a
fork: the worker has threads (sender, WAL checkpoints), and the index is
millions of small objects whose reference counts would copy every page a
fork shared. Nor is it multiprocessing's spawn, which would import the
worker's main module (the CLI, and SQLAlchemy with it) again. Worker and
child talk over two pipes with multiprocessing's `Connection` (pickled
messages); the database URL goes over the pipe, never on a command line. It loads the index itself, from
the cache beside the database (`index.load_cached`, the worker having
checked the table's fingerprint), so the worker never holds the index and
the child never imports SQLAlchemy: worker and helper together hold about
what one process with the index did. Only when the cache is missing or
stale does the child read the code table and build it (as `consultant
suggest` would).

Faults, each ending with the worker going on:

- a match that raises in the child: that text's `match` raises `MatchFailed`
  (the pipeline marks the case failed, as for any error in matching); the
  child keeps serving;
- a child that dies (killed, out of memory) or takes longer than
  `timeout` seconds: it is killed and a new one started, and the text
  asked for is tried once more, alone; when it fails that way again, it is
  the text: `MatchFailed`;
- a child that cannot start (no code table, a broken cache): `MatcherUnavailable`,
  a ServiceError: the pass is abandoned and the next poll tries again;
- a batch whose classification is lost with its child: `classified` says
  so (None) and the worker classifies that batch itself.

Only texts and results cross the pipe; the child logs nothing of a question
(an error is reported by its type name only).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consultant.classify import Outcome
from consultant.errors import ServiceError
from consultant.faults import crash_point
from consultant.inbox import FetchedMessage, MailRef
from consultant.match.base import MatchResult
from consultant.match.index import default_cache_path, table_fingerprint

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

START_TIMEOUT = 300.0  # seconds for a child to load the index (a stale cache is rebuilt: ~30 s)
MATCH_TIMEOUT = 60.0  # seconds without an answer before the child is deemed stuck
KEPT = 400  # prefetched texts remembered at most (cases claimed but never answered here)
CLASSIFY_STEP = 10  # messages classified between looks for a match request


class MatcherUnavailable(ServiceError):
    """The helper process could not be started."""


class MatchFailed(RuntimeError):
    """Matching this text failed (an error in the matcher, or it killed the helper twice)."""


class _ChildLost(Exception):
    """The child died or stopped answering."""


def index_source(engine: Engine) -> tuple[str, Path | None, str]:
    """What the child needs to find its index: the database, the cache, and the table's
    fingerprint (checked here, so the child needs no database when the cache is current)."""
    return engine.url.render_as_string(hide_password=False), default_cache_path(engine), table_fingerprint(engine)


class MatchHelper:
    """A `Matcher` whose matching runs in a child process over `engine`'s code table."""

    def __init__(self, engine: Engine, *, timeout: float = MATCH_TIMEOUT) -> None:
        self._source = index_source(engine)
        self.timeout = timeout
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._to: _Writer | None = None  # requests to the child
        self._from: Connection | None = None  # its answers
        self._batch = 0
        self._waiting: OrderedDict[int, list[str] | None] = OrderedDict()  # sent, not yet answered (None: classify)
        self._results: OrderedDict[str, tuple[str, Any]] = OrderedDict()  # text -> ("ok", result) | ("error", name)
        self._classified: dict[int, list[Outcome]] = {}
        self._start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def prefetch(self, texts: Iterable[str]) -> None:
        """Start matching `texts` now; `match` picks the results up later."""
        new = [t for t in dict.fromkeys(texts) if t and not self._asked(t)]
        if new:
            try:
                self._send(new)
            except _ChildLost:
                self._restart()  # the texts are asked for again, one by one, by `match`

    def match(self, text: str) -> MatchResult:
        for attempt in (1, 2):
            try:
                if not self._asked(text):
                    self._send([text])
                while text not in self._results:
                    self._receive()
                break
            except _ChildLost:
                self._restart()
                if attempt == 2:
                    raise MatchFailed("the match helper died twice on this question") from None
        outcome, value = self._results.pop(text)
        if outcome != "ok":
            raise MatchFailed(f"matching failed in the helper ({value})")
        return value

    def classify_ahead(self, messages: list[FetchedMessage], *, own_address: str, authserv_id: str) -> int:
        """Start classifying `messages`; a ticket for `classified` (0 when the child was lost)."""
        try:
            return self._send(None, ("classify", messages, own_address, authserv_id))
        except _ChildLost:
            self._restart()
            return 0

    def classified_ready(self, ticket: int) -> bool:
        """Whether `classify_ahead`'s batch is back: reads what has arrived, never waits (a lost
        child counts as ready, so that `classified` finds out at once)."""
        try:
            while ticket in self._waiting and self._from is not None and self._from.poll(0):
                self._receive()
        except (OSError, EOFError, _ChildLost):
            return True
        return ticket not in self._waiting

    def classified(self, ticket: int) -> dict[MailRef, Outcome] | None:
        """The outcomes of `classify_ahead`'s batch by message, or None when they were lost."""
        try:
            while ticket in self._waiting:
                self._receive()
        except _ChildLost:
            self._restart()
        outcomes = self._classified.pop(ticket, None)
        return None if outcomes is None else {o.ref: o for o in outcomes}

    def close(self) -> None:
        """Stop the child (it also stops by itself when the worker's end of the pipe closes)."""
        if self._to is not None:
            self._to.close(goodbye=self._process is not None and self._process.poll() is None)
            self._to = None
        if self._process is not None:
            try:
                self._process.wait(5.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5.0)
            self._process = None
        if self._from is not None:
            self._from.close()
            self._from = None

    # ------------------------------------------------------------------ the pipe

    def _asked(self, text: str) -> bool:
        """Answered already, or on its way (a few batches of ten wait at most)."""
        return text in self._results or any(batch and text in batch for batch in self._waiting.values())

    def _send(self, texts: list[str] | None, request: tuple[Any, ...] | None = None) -> int:
        assert self._to is not None
        if not self._to.alive:
            raise _ChildLost
        self._batch += 1
        self._to.send((self._batch, request or ("match", texts)))
        self._waiting[self._batch] = texts
        return self._batch

    def _receive(self) -> None:
        """Read the next batch of results (matches may overtake a batch being classified)."""
        assert self._from is not None
        try:
            if not self._from.poll(self.timeout):
                raise _ChildLost
            batch, outcomes = self._from.recv()
        except (OSError, EOFError) as exc:
            raise _ChildLost from exc
        texts = self._waiting.pop(batch)
        if texts is None:
            self._classified[batch] = outcomes
            return
        for text, outcome in zip(texts, outcomes, strict=True):
            self._results[text] = outcome
        while len(self._results) > KEPT:
            self._results.popitem(last=False)

    def _start(self) -> None:
        theirs_in, ours_out = os.pipe()
        ours_in, theirs_out = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "consultant.match.helper", str(theirs_in), str(theirs_out)],
                pass_fds=(theirs_in, theirs_out), stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(theirs_in)
            os.close(theirs_out)
        self._to, self._from = _Writer(Connection(ours_out, readable=False)), Connection(ours_in, writable=False)
        try:
            self._to.send(self._source)
            if not self._from.poll(START_TIMEOUT):
                raise MatcherUnavailable(f"the match helper did not start within {START_TIMEOUT:.0f} s")
            state, detail = self._from.recv()
        except (OSError, EOFError):
            state, detail = "died", f"exit code {self._process.poll()}"
        except MatcherUnavailable:
            self._kill()
            raise
        if state != "ready":
            self._kill()
            raise MatcherUnavailable(f"the match helper could not start ({detail})")

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self.close()

    def _restart(self) -> None:
        log.warning("match helper lost (exit code %s); starting a new one",
                    self._process.poll() if self._process is not None else None)
        self._kill()
        self._waiting.clear()
        self._classified.clear()
        self.restarts += 1
        self._start()


class _Writer:
    """Requests go to the child from a thread of their own, so the worker never blocks on a
    full pipe: a fetched batch to classify is larger than the pipe holds, and the child, busy
    sending answers the worker has not read yet, may not be reading. (Both ends writing and
    neither reading is a deadlock.) The worker notices a dead or stuck child by its answers."""

    _STOP = object()

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.alive = True
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="match-helper-requests", daemon=True)
        self._thread.start()

    def send(self, obj: Any) -> None:
        self._queue.put(ForkingPickler.dumps(obj))  # pickled here: an error is the caller's

    def close(self, *, goodbye: bool) -> None:
        if goodbye:
            self.send(None)
        self._queue.put(self._STOP)
        self._thread.join(5.0)  # a child that is not reading has been killed: the write fails at once
        self.conn.close()

    def _run(self) -> None:
        while (data := self._queue.get()) is not self._STOP:
            if not self.alive:
                continue
            try:
                self.conn.send_bytes(data)
            except OSError:
                self.alive = False  # the child is gone; `MatchHelper._receive` finds out


def serve(requests: Connection, answers: Connection) -> None:
    """The child: load the matcher, then answer batches until the pipe closes or says None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    try:
        database_url, cache, fingerprint = requests.recv()
        from consultant.match import CodeMatcher
        from consultant.match.index import load_cached, load_index
        from consultant.match.lexicon import load_lexicon

        index = load_cached(cache, fingerprint) if cache is not None else None
        if index is None:  # no current cache: read the table and build it (and the cache)
            from consultant.db import make_engine

            engine = make_engine(database_url)
            index = load_index(engine, cache_path=cache if cache is not None else False)
            engine.dispose()
        matcher = CodeMatcher(index, load_lexicon())
    except Exception as exc:  # noqa: BLE001 - told to the worker, which raises MatcherUnavailable
        answers.send(("failed", type(exc).__name__))
        return
    answers.send(("ready", None))
    arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(requests, arrived), name="requests", daemon=True).start()
    # Matching comes first: the worker waits for its answers. A batch to classify is worked
    # on CLASSIFY_STEP messages at a time whenever no match is asked for, and sent whole.
    parsing: deque[tuple[int, list[FetchedMessage], str, str, list[Outcome]]] = deque()
    while True:
        try:
            request = arrived.get(block=not parsing)
        except queue.Empty:
            batch, messages, own_address, authserv_id, done = parsing[0]
            step = messages[len(done):len(done) + CLASSIFY_STEP]
            done += _classify(step, own_address, authserv_id)
            if len(done) == len(messages):
                parsing.popleft()
                answers.send((batch, done))
            continue
        if request is None:
            return
        batch, (kind, *args) = request
        crash_point("in_match_helper")
        if kind == "classify":
            parsing.append((batch, *args, []))
        else:
            answers.send((batch, _match_all(matcher, *args)))


def _read_requests(requests: Connection, arrived: queue.SimpleQueue[Any]) -> None:
    """The child's reader: requests are taken off the pipe as they come, so the worker's
    writer never waits, and matches can go before a batch being classified."""
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            request = None
        arrived.put(request)
        if request is None:
            return


def _match_all(matcher: Any, texts: list[str]) -> list[tuple[str, Any]]:
    outcomes: list[tuple[str, Any]] = []
    for text in texts:
        try:
            outcomes.append(("ok", matcher.match(text)))
        except Exception as exc:  # noqa: BLE001 - one text's error is that text's answer
            outcomes.append(("error", type(exc).__name__))
    return outcomes


def _classify(messages: list[FetchedMessage], own_address: str, authserv_id: str) -> list[Outcome]:
    from consultant.classify import classify_safely  # one message's error quarantines that message

    return [classify_safely(m, own_address=own_address, authserv_id=authserv_id) for m in messages]


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
