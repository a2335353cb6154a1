"""IMAP IDLE (I12): new mail wakes the poll at once; polling stays the fallback.

* the watcher, on pymap and on Dovecot: an APPEND from another client wakes it;
* the waker: never asks for a second poll while one runs, and never loses a wake;
* end to end: `consultant run` with a 300 s poll interval answers a question
  in seconds with IDLE on, and not within that time with IDLE off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from consultant.idle import IdleWatcher
from consultant.inbox import ImapConfig
from consultant.scheduling import Waker

REPO = Path(__file__).resolve().parent.parent
ADDRESS = "consultant@localhost"


def question(subject: str = "CPT 62310?") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Pat Coder <pat@clinic.example>"
    msg["To"] = ADDRESS
    msg["Subject"] = subject
    msg["Message-ID"] = f"<idle-{time.monotonic_ns()}@clinic.example>"
    msg.set_content("What is CPT code 62310?")
    return msg.as_bytes()


def append(config: ImapConfig, raw: bytes) -> None:
    with IMAPClient(config.host, port=config.port, ssl=False, timeout=10) as client:
        client.login(config.user, config.password)
        client.append(config.folder, raw)


@pytest.mark.parametrize("server", ["pymap_server", "dovecot_server"])
def test_new_mail_wakes_the_watcher(server: str, request: pytest.FixtureRequest) -> None:
    config: ImapConfig = request.getfixturevalue(server)
    woken = threading.Event()
    watcher = IdleWatcher(config, woken.set, renew_seconds=2.0)  # renewed twice during the test
    watcher.start()
    try:
        assert watcher.ready.wait(10), "the watcher never entered IDLE"
        time.sleep(4.5)  # past two renewals: a renewed IDLE still hears new mail
        assert watcher.ready.wait(5)
        assert not woken.is_set()
        append(config, question())
        assert woken.wait(5), "an APPEND did not wake the watcher"
    finally:
        watcher.stop()
        watcher.join(timeout=5)
    assert not watcher.is_alive()


def test_a_watcher_that_cannot_log_in_keeps_trying_quietly(pymap_server: ImapConfig,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace

    watcher = IdleWatcher(replace(pymap_server, password="wrong"), lambda: None)
    watcher.start()
    try:
        time.sleep(1.0)
        assert watcher.is_alive() and not watcher.ready.is_set()
    finally:
        watcher.stop()
        watcher.join(timeout=10)
    assert not watcher.is_alive()
    lines = [r.getMessage() for r in caplog.records if r.name == "consultant.idle"]
    assert lines and all("polling only" in line and "wrong" not in line for line in lines)


def test_a_response_in_pieces_wakes_a_poll_and_reconnects_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """pymap writes its responses to new mail in pieces; imaplib refuses a line that has only
    partly arrived while idle_check reads without waiting. The lines read with it (the EXISTS)
    are lost, so the watcher wakes a poll and starts a new connection, without the 5 s pause
    of a failure (the cause of a flaky miss of this suite's pymap test)."""
    import imaplib

    from consultant import idle

    client, connections = scripted_client(
        check_error=imaplib.IMAP4.abort("socket error: unterminated line: b'* 1 FETCH ('"))
    monkeypatch.setattr(idle, "IMAPClient", client)
    monkeypatch.setattr(idle, "_still_readable", lambda _client: False)
    woken = threading.Event()
    watcher = IdleWatcher(ImapConfig(host="127.0.0.1", port=1, user="u", password="p", use_ssl=False), woken.set)
    watcher.start()
    try:
        assert woken.wait(2), "the lost lines did not wake a poll"
        deadline = time.monotonic() + 2
        while len(connections) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(connections) == 2 and watcher.ready.wait(2)  # back in IDLE well before the 5 s retry
    finally:
        watcher.stop()
        watcher.join(timeout=5)


def test_mail_that_comes_during_a_renewal_wakes_the_watcher(dovecot_server: ImapConfig,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Renewing IDLE every few hundredths of a second puts many APPENDs inside a renewal, where
    the server announces them in its answer to DONE. Before the watcher read that answer, one
    wake in three was lost this way (and a CI run failed the test above on it)."""
    import random

    from consultant import idle

    monkeypatch.setattr(idle, "CHECK_SECONDS", 0.02)
    woken = threading.Event()
    watcher = IdleWatcher(dovecot_server, woken.set, renew_seconds=0.02)
    watcher.start()
    missed = []
    try:
        assert watcher.ready.wait(10)
        for attempt in range(30):
            time.sleep(random.uniform(0.01, 0.1))
            woken.clear()
            append(dovecot_server, question())
            if not woken.wait(3):
                missed.append(attempt)
    finally:
        watcher.stop()
        watcher.join(timeout=5)
    assert missed == [], f"{len(missed)} of 30 APPENDs woke nothing"


def scripted_client(*, done: list | None = None, idle_error: Exception | None = None,
                    check_error: Exception | None = None) -> tuple[type, list[str]]:
    """An IMAPClient stand-in whose first connection answers DONE with `done`, refuses to begin
    IDLE with `idle_error` or fails its first look at the socket with `check_error`; later
    connections idle quietly. Returns it and its connections."""
    connections: list[str] = []

    class Client:
        def __init__(self, *_args: object, **_kwargs: object) -> None:
            connections.append("connect")

        def login(self, *_args: object) -> None: ...
        def has_capability(self, _name: str) -> bool: return True
        def select_folder(self, *_args: object, **_kwargs: object) -> None: ...
        def logout(self) -> None: ...

        def idle(self) -> None:
            if len(connections) == 1 and idle_error is not None:
                raise idle_error

        def idle_check(self, timeout: float) -> list:
            if len(connections) == 1 and check_error is not None:
                raise check_error
            time.sleep(timeout)
            return []

        def idle_done(self) -> tuple[bytes, list]:
            return b"Idle completed", (done or []) if len(connections) == 1 else []

    return Client, connections


def _run_scripted(monkeypatch: pytest.MonkeyPatch, client: type, connections: list[str]) -> tuple[bool, int, bool]:
    """Run a watcher on the scripted client for a moment: (woken, connections, back in IDLE)."""
    from consultant import idle

    monkeypatch.setattr(idle, "IMAPClient", client)
    monkeypatch.setattr(idle, "CHECK_SECONDS", 0.05)
    monkeypatch.setattr(idle, "_still_readable", lambda _client: False)
    woken = threading.Event()
    watcher = IdleWatcher(ImapConfig(host="127.0.0.1", port=1, user="u", password="p", use_ssl=False),
                          woken.set, renew_seconds=0.1)
    watcher.start()
    try:
        was_woken = woken.wait(2)
        time.sleep(0.3)
        return was_woken, len(connections), watcher.ready.is_set()
    finally:
        watcher.stop()
        watcher.join(timeout=5)


def test_new_mail_in_the_answer_to_done_wakes_a_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    client = scripted_client(done=[(b"OK", b"Still here"), (7, b"EXISTS")])
    woken, connections, idling = _run_scripted(monkeypatch, *client)
    assert woken and connections == 1 and idling  # the same connection goes on idling


def test_a_response_before_idle_begins_wakes_a_poll_and_reconnects_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import imaplib

    client = scripted_client(idle_error=imaplib.IMAP4.error("Unexpected IDLE response: b'* 8 EXISTS'"))
    woken, connections, idling = _run_scripted(monkeypatch, *client)
    assert woken and connections == 2 and idling  # reconnected well before a failure's 5 s pause


def test_a_plain_expunge_in_the_answer_to_done_wakes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    woken, connections, idling = _run_scripted(monkeypatch, *scripted_client(done=[(3, b"EXPUNGE")]))
    assert not woken and connections == 1 and idling


class FakeScheduler:
    running = True

    def __init__(self) -> None:
        self.moved: list[str] = []

    def modify_job(self, job_id: str, **_changes: object) -> None:
        self.moved.append(job_id)


def test_the_waker_moves_the_poll_only_when_none_runs() -> None:
    scheduler = FakeScheduler()
    waker = Waker(scheduler)  # type: ignore[arg-type]
    waker.wake()
    assert scheduler.moved == ["poll"]  # idle worker: poll now

    waker.enter()  # a poll runs
    waker.wake()
    waker.wake()
    assert scheduler.moved == ["poll"]  # never a second poll beside the running one
    assert waker.again() is True  # ... the running one makes one more pass instead
    assert waker.again() is False
    waker.leave()
    assert scheduler.moved == ["poll"]

    waker.enter()
    waker.wake()  # mail after the poll's last look, before it ended
    waker.leave()
    assert scheduler.moved == ["poll", "poll"]  # not lost: the next poll is moved to now


def _worker_env(imap: ImapConfig, smtp_port: int, database_url: str, index_dir: Path, *, idle: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTANT_")}
    env.update({
        "CONSULTANT_ADDRESS": ADDRESS,
        "CONSULTANT_IMAP_HOST": imap.host,
        "CONSULTANT_IMAP_PORT": str(imap.port),
        "CONSULTANT_IMAP_USER": imap.user,
        "CONSULTANT_IMAP_PASSWORD": imap.password,
        "CONSULTANT_IMAP_SSL": "false",
        "CONSULTANT_SMTP_HOST": "127.0.0.1",
        "CONSULTANT_SMTP_PORT": str(smtp_port),
        "CONSULTANT_SMTP_SECURITY": "none",
        "CONSULTANT_DATABASE_URL": database_url,
        "CONSULTANT_POLL_SECONDS": "300",
        "CONSULTANT_IMAP_IDLE": "true" if idle else "false",
        "CONSULTANT_REVIEW_BELOW": "0",
        "CONSULTANT_REVIEW_NO_CODES": "false",
        "CONSULTANT_DIGEST_TIME": "off",
        "CONSULTANT_LOG_LEVEL": "WARNING",
        "CONSULTANT_INDEX_DIR": str(index_dir),
    })
    return env


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "poll-only"])
def test_a_question_is_answered_at_once_with_idle(idle: bool, dovecot_server: ImapConfig, smtp_sink,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path) -> None:
    from tests.crash_harness import sqlite_database

    url = sqlite_database(tmp_path)
    env = _worker_env(dovecot_server, smtp_sink.port, url, tmp_path / "index", idle=idle)
    worker = subprocess.Popen([sys.executable, "-m", "consultant", "run"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        for line in worker.stderr:  # up when it says how it polls
            if line.startswith("Polling every"):
                break
        time.sleep(3.0)  # the start-up poll is over: only IDLE can bring the next one before 300 s
        started = time.monotonic()
        append(dovecot_server, question())
        smtp_sink.wait_for(1, timeout=6.0 if idle else 4.0)
        waited = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    if idle:
        assert len(smtp_sink.messages) == 1, "no reply within 6 s although IDLE was on"
        assert waited < 6.0
    else:
        assert smtp_sink.messages == []  # the control: without IDLE it waits for the 300 s poll


def test_a_wake_after_shutdown_does_nothing() -> None:
    """The IDLE connection breaks as the service stops (the embedded server stops with it): the
    watcher's last wake must not raise in its thread."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(lambda: None, "interval", seconds=300, id="poll")
    scheduler.start()
    waker = Waker(scheduler)
    waker.wake()
    assert scheduler.get_job("poll").next_run_time is not None
    scheduler.shutdown(wait=False)
    waker.wake()  # no JobLookupError
    waker.enter()
    waker.wake()
    waker.leave()  # nor here


def test_the_stop_handler_stops_once() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from consultant.scheduling import Stopper

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    stopping = threading.Event()
    stop = Stopper(scheduler, stopping)
    stop(15, None)
    stop(15, None)  # shutting a stopped scheduler down again would raise SchedulerNotRunningError
    assert stopping.is_set() and not scheduler.running


def test_a_second_sigterm_stops_the_worker_as_cleanly_as_one(dovecot_server: ImapConfig, smtp_sink,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    """`timeout` and a terminal's Ctrl-C signal the whole process group, so the worker may get
    SIGTERM twice: it stops once and writes no traceback."""
    import signal

    from tests.crash_harness import sqlite_database

    env = _worker_env(dovecot_server, smtp_sink.port, sqlite_database(tmp_path), tmp_path / "index", idle=True)
    env["CONSULTANT_LOG_LEVEL"] = "INFO"
    worker = subprocess.Popen([sys.executable, "-m", "consultant", "run"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert worker.stderr is not None
    for line in worker.stderr:
        if line.startswith("Polling every"):
            break
    time.sleep(1.5)  # the watcher is in IDLE
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.05)  # handled one by one (two signals sent at once may arrive as one)
    worker.send_signal(signal.SIGTERM)
    rest = worker.stderr.read()
    # 0, or the second signal met the interpreter's own exit (its handlers are reset by then)
    assert worker.wait(timeout=30) in (0, -signal.SIGTERM), rest
    assert "Traceback" not in rest and rest.count("stopping after the current poll") == 1, rest


def _start_pymap(port: int) -> subprocess.Popen:
    from tests.mailhost import wait_for_port

    proc = subprocess.Popen(
        [sys.executable, "-c", "from pymap.main import main; main()", "--no-tls", "--host", "127.0.0.1",
         "--port", str(port), "dict", "--demo-user", ADDRESS, "--demo-password", "pymap-test"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return proc


def test_the_watcher_comes_back_after_the_server_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """I12: a dropped IDLE connection is noticed and the watcher reconnects (first retry after 5 s)."""
    from tests.mailhost import free_port

    port = free_port()
    server = _start_pymap(port)
    config = ImapConfig(host="127.0.0.1", port=port, user=ADDRESS, password="pymap-test", use_ssl=False, timeout=5)
    woken = threading.Event()
    watcher = IdleWatcher(config, woken.set)
    watcher.start()
    try:
        assert watcher.ready.wait(10)
        time.sleep(11)  # a steady connection (STEADY_SECONDS): its loss is a drop, reconnected at once
        server.kill()
        server.wait(timeout=10)
        deadline = time.monotonic() + 10
        while watcher.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not watcher.ready.is_set(), "the dead connection went unnoticed"
        server = _start_pymap(port)
        assert watcher.ready.wait(20), "the watcher did not come back"
        append(config, question())
        assert woken.wait(5)
    finally:
        watcher.stop()
        watcher.join(timeout=10)
        server.kill()
        server.wait(timeout=10)


def test_the_watcher_says_when_idle_works_again(pymap_server: ImapConfig, caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure at start (seen once with the embedded pymap) is followed by a line saying IDLE is back."""
    import logging

    from consultant import idle

    monkeypatch.setattr(idle, "RETRY_FIRST", 0.5)
    real_login, failed = IMAPClient.login, []

    def login_once_refused(self: IMAPClient, user: str, password: str):  # type: ignore[no-untyped-def]
        if not failed:
            failed.append(True)
            raise ConnectionError("refused once")
        return real_login(self, user, password)

    monkeypatch.setattr(IMAPClient, "login", login_once_refused)
    caplog.set_level(logging.INFO, logger="consultant.idle")
    watcher = IdleWatcher(pymap_server, lambda: None)
    watcher.start()
    try:
        assert watcher.ready.wait(10)
    finally:
        watcher.stop()
        watcher.join(timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "consultant.idle"]
    assert any("polling only" in line for line in lines) and any("works again" in line for line in lines)
