"""A staff member in a real browser: log in, filter the queue, open a held case, edit its codes,
approve it, and the reply arrives at the SMTP server.

Playwright drives Debian's Chromium (/usr/bin/chromium, headless); no browser is downloaded.
Without Chromium the test skips, unless CONSULTANT_REQUIRE_BROWSER is set (as in CI): then it
fails. It saves the queue and case pages as docs/screenshots/queue.png and case.png.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from consultant.admin.app import AdminConfig, create_app
from consultant.db import session_scope
from consultant.inbox import MemoryInbox
from consultant.match.base import Suggestion
from consultant.outbox import SmtpConfig, SmtpTransport
from consultant.pipeline import ReviewPolicy, Services, run_once
from consultant.staff import create_staff
from tests.conftest import free_port
from tests.fakes import DEFAULT_TABLE, KeywordMatcher, question
from tests.test_review import ADDRESS, add_codes

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
# The screenshots in docs/ are refreshed only on request, so a test run leaves the checkout clean.
SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("CONSULTANT_SAVE_SCREENSHOTS")
    else Path(tempfile.mkdtemp(prefix="cc-screens-"))
)
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
STAFF, PASSWORD = "lead@caseconsultant.example", "correct horse battery"

UNSURE = Suggestion(
    code="I10", system="ICD-10-CM", status="valid", score=0.31, confidence=0.31,
    official="Essential (primary) hypertension", plain="High blood pressure with no known cause",
    release="ICD-10-CM FY2026", evidence=("'high blood pressure' ~ hypertension",),
)
QUESTIONS = [
    ("coder@clinic.example", "CPT 62310", "What is CPT code 62310?"),
    ("biller@practice.example", "Diabetes code", "Is E11.9 still a valid code?"),
    ("pat@clinic.example", "BP follow-up", "Patient seen for high blood pressure follow-up, on lisinopril. Code?"),
    ("coder@clinic.example", "one more", "And E11.9 for the same visit?"),
    ("np@familycare.example", "knee", "Can you help with a knee thing from last week?"),
    ("x@evil.example", '<script>alert("hi")</script> urgent', '<img src=x onerror=alert(1)> what code?'),
]


def browser_or_skip():  # type: ignore[no-untyped-def]
    """Playwright's sync API, or a skip (a failure when CONSULTANT_REQUIRE_BROWSER is set)."""
    required = os.environ.get("CONSULTANT_REQUIRE_BROWSER", "").lower() in {"1", "true", "yes"}
    problem = ""
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "playwright is not installed (pip install -e '.[test]')"
    if problem:
        if required:
            pytest.fail(f"the browser test is required: {problem}")
        pytest.skip(problem)
    return sync_playwright


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def worker(engine, smtp_sink) -> Services:  # type: ignore[no-untyped-def]
    """The worker, with a few questions answered or held, replies going to the test SMTP server."""
    add_codes(engine)
    services = Services(
        engine=engine,
        inbox=MemoryInbox(),
        transport=SmtpTransport(SmtpConfig(host="127.0.0.1", port=smtp_sink.port, security="none", timeout=10)),
        matcher=KeywordMatcher({**DEFAULT_TABLE, "high blood pressure": UNSURE}),
        address=ADDRESS,
        review=ReviewPolicy(below_confidence=0.5, no_codes=True),
    )
    for minutes, (sender, subject, text) in enumerate(QUESTIONS):
        services.inbox.deliver(question(text, sender=sender, subject=subject))
        run_once(services, now=lambda at=NOW + timedelta(minutes=7 * minutes): at)
    with session_scope(engine) as session:
        create_staff(session, STAFF, PASSWORD, now=NOW)
    return services


@pytest.fixture
def admin_url(engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    import uvicorn

    config = AdminConfig(secret="browser-test-" + "9f3a" * 8, address=ADDRESS)
    app = create_app(engine, config, now=Clock(NOW + timedelta(hours=1)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the admin app did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_staff_review_a_held_case_in_the_browser(worker, admin_url, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    sync_playwright = browser_or_skip()
    smtp_sink.wait_for(3)
    assert len(smtp_sink.messages) == 3  # two answers and one over-quota notice; three cases are held
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            blocked: list[str] = []
            page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
            page.on("dialog", lambda dialog: blocked.append(f"script ran: {dialog.message}"))

            page.goto(f"{admin_url}/queue")
            assert page.url.startswith(f"{admin_url}/login?next=")
            page.fill("input[name=email]", STAFF)
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Log in')")
            page.wait_for_url(f"{admin_url}/queue")
            assert page.locator("table.cases tbody tr").count() == 6
            assert page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(29, 53, 87)"
            page.screenshot(path=str(SCREENSHOTS / "queue.png"))

            page.select_option("select[name=status]", "needs_review")
            page.fill("input[name=sender]", "pat@")
            page.click("button:has-text('Filter')")
            page.wait_for_url("**/queue?status=needs_review&sender=pat%40*")
            rows = page.locator("table.cases tbody tr")
            assert rows.count() == 1 and "BP follow-up" in rows.first.inner_text()
            rows.first.locator("a").first.click()
            page.wait_for_url("**/cases/*")
            assert "review_low_confidence" in page.inner_text("h1")
            assert "I10" in page.inner_text("table.codes")

            page.fill("textarea[name=codes]", "I10\nE11.9")
            page.click("button:has-text('Save codes')")
            page.wait_for_selector("p.flash.ok")
            assert "Codes now: I10, E11.9" in page.inner_text("p.flash")
            held = page.frame_locator("article.reply iframe").first  # newest first: the rewritten reply
            assert "Type 2 diabetes mellitus without complications" in held.locator("body").inner_text()
            # Chromium paints a sandboxed frame only inside the viewport: make the viewport the whole page.
            page.set_viewport_size({"width": 1360, "height": page.evaluate("document.documentElement.scrollHeight")})
            held.locator("body").wait_for()
            page.screenshot(path=str(SCREENSHOTS / "case.png"))
            page.set_viewport_size({"width": 1360, "height": 900})

            page.click("button:has-text('Approve and send')")
            page.wait_for_selector("p.flash.ok")
            assert "Approved." in page.inner_text("p.flash")
            assert page.locator("button:has-text('Approve and send')").count() == 0

            page.goto(f"{admin_url}/queue?status=needs_review")
            assert page.locator("table.cases tbody tr").count() == 2
            assert "<script>" in page.inner_text("table.cases")  # shown as text, never run
            assert blocked == []
        finally:
            browser.close()

    run_once(worker, now=lambda: NOW + timedelta(hours=1, minutes=1))  # the worker's next poll sends it
    smtp_sink.wait_for(4)
    _, recipients, raw = smtp_sink.messages[-1]
    reply = message_from_bytes(raw, policy=policy.default)
    text = reply.get_body(preferencelist=("plain",)).get_content()
    assert recipients == ["pat@clinic.example"] and reply["Subject"] == "Re: BP follow-up"
    assert "I10" in text and "E11.9" in text and "Essential (primary) hypertension" in text
