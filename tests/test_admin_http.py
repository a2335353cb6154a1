"""The admin app over HTTP: every route without a session, with a wrong CSRF token, and as staff."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from consultant.admin.app import AdminConfig, create_app
from consultant.db import session_scope
from consultant.models import Account, AuditEntry, Case, CaseStatus, Outbox, OutboxStatus, StaffUser, Tier
from consultant.staff import create_staff, set_password
from tests.test_review import ADDRESS, NOW, add_codes, held_case

STAFF_EMAIL, STAFF_PASSWORD = "staff@caseconsultant.example", "correct horse battery"
SECRET = "k" * 20 + "0123456789abcdefghij"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Admin:
    client: TestClient
    engine: object
    clock: Clock
    held_id: int


@pytest.fixture
def admin(engine) -> Admin:  # type: ignore[no-untyped-def]
    add_codes(engine)
    held_case(engine)
    with session_scope(engine) as session:
        create_staff(session, STAFF_EMAIL, STAFF_PASSWORD, now=NOW)
        held_id = session.exec(select(Case.id)).one()
        session.add(Account(email="full@clinic.example", tier=Tier.free, answered=6, created_at=NOW))
    clock = Clock(NOW + timedelta(minutes=1))
    app = create_app(engine, AdminConfig(secret=SECRET, address=ADDRESS, session_minutes=60), now=clock)
    return Admin(TestClient(app, follow_redirects=False), engine, clock, held_id)


def login(client: TestClient, email: str = STAFF_EMAIL, password: str = STAFF_PASSWORD, next_url: str = "/queue"):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    return client.post("/login", data={"email": email, "password": password, "csrf": token, "next": next_url})


def csrf_of(client: TestClient, path: str = "/queue") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def pages(admin: Admin) -> list[str]:
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        reply_id = session.exec(select(Outbox.id)).first()
    return ["/", "/queue", "/queue?status=needs_review&q=pressure", f"/cases/{admin.held_id}", "/accounts",
            "/accounts?q=full", "/digest", f"/cases/{admin.held_id}/replies/{reply_id}.html"]


def actions(admin: Admin) -> list[tuple[str, dict[str, str]]]:
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        reply_id = session.exec(select(Outbox.id)).first()
        account_id = session.exec(select(Account.id)).first()
    case = f"/cases/{admin.held_id}"
    return [
        (f"{case}/approve", {}),
        (f"{case}/codes", {"codes": "E11.9"}),
        (f"{case}/reject", {"note": "no"}),
        (f"/replies/{reply_id}/retry", {}),
        ("/accounts", {"email": "new@clinic.example", "tier": "free"}),
        (f"/accounts/{account_id}/plan", {"tier": "plan", "extra_answers": "50"}),
        (f"/accounts/{account_id}/grant", {"count": "5"}),
        (f"/accounts/{account_id}/active", {"active": "0"}),
        ("/logout", {}),
    ]


def state_of(admin: Admin) -> tuple:
    """Everything an action could change."""
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        return (
            [(c.status, c.codes) for c in session.exec(select(Case))],
            [(o.status, o.message_id) for o in session.exec(select(Outbox))],
            [(a.email, a.tier, a.extra_answers, a.active) for a in session.exec(select(Account))],
            [(e.action, e.detail) for e in session.exec(select(AuditEntry))
             if e.action not in ("login", "logout", "view")],
        )


DATA = ("pat@clinic.example", "blood pressure", "I10", "full@clinic.example", "hypertension")


def test_every_page_without_a_session_redirects_to_login_and_shows_nothing(admin: Admin) -> None:
    for path in pages(admin):
        response = admin.client.get(path)
        if path.endswith(".html"):
            assert response.status_code == 401, path
        else:
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=")
        for secret in DATA:
            assert secret not in response.text, (path, secret)


def test_every_action_without_a_session_is_refused_and_changes_nothing(admin: Admin) -> None:
    before = state_of(admin)
    for path, data in actions(admin):
        response = admin.client.post(path, data={**data, "csrf": "anything"})
        assert response.status_code == 401, path
        assert not any(secret in response.text for secret in DATA)
    assert state_of(admin) == before


def test_a_forged_or_stale_session_cookie_is_no_session(admin: Admin) -> None:
    admin.client.cookies.set("cc_session", "eyJ1IjoxfQ.forged")
    assert admin.client.get("/queue").status_code == 303
    login(admin.client)
    admin.clock.at += timedelta(minutes=61)  # past CONSULTANT_SESSION_MINUTES
    assert admin.client.get("/queue").status_code == 303


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_every_action_with_a_wrong_csrf_token_is_refused(admin: Admin, token: str) -> None:
    login(admin.client)
    before = state_of(admin)
    for path, data in actions(admin):
        response = admin.client.post(path, data={**data, "csrf": token} if token else data)
        assert response.status_code == 403, path
    assert state_of(admin) == before
    assert admin.client.get("/queue").status_code == 200  # still logged in: /logout was refused too


def test_every_page_as_staff_with_security_headers(admin: Admin) -> None:
    assert login(admin.client).headers["location"] == "/queue"
    for path in pages(admin):
        response = admin.client.get(path)
        if path == "/":
            assert response.headers["location"] == "/queue"
            continue
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        if path.endswith(".html"):
            assert "sandbox" in csp and response.headers["x-frame-options"] == "SAMEORIGIN"
        else:
            assert "frame-ancestors 'none'" in csp and response.headers["x-frame-options"] == "DENY"
            assert "<script" not in response.text
    case_page = admin.client.get(f"/cases/{admin.held_id}").text
    for expected in ("patient has high blood pressure", "I10", "review_low_confidence", "Approve and send",
                     "&#39;blood pressure&#39; ~ hypertension", "&lt;held@clinic.example&gt;", "iframe sandbox"):
        assert expected in case_page, expected


def test_login_refuses_wrong_passwords_forged_forms_and_then_throttles(admin: Admin) -> None:
    assert login(admin.client, password="wrong password!").status_code == 401
    assert login(admin.client, email="nobody@example.org").status_code == 401
    forged = admin.client.post("/login", data={"email": STAFF_EMAIL, "password": STAFF_PASSWORD, "csrf": "x"})
    assert forged.status_code == 403 and "cc_session" not in forged.headers.get("set-cookie", "")
    for _ in range(3):
        login(admin.client, password="still wrong")
    blocked = login(admin.client)  # the right password, but too many failures just now
    assert blocked.status_code == 429 and "Too many failed logins" in blocked.text
    admin.clock.at += timedelta(minutes=16)
    assert login(admin.client).status_code == 303


def test_login_only_redirects_inside_the_admin(admin: Admin) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert login(admin.client, next_url=target).headers["location"] == "/queue"
        admin.client.cookies.clear()
    assert login(admin.client, next_url="/cases/1?x=1").headers["location"] == "/cases/1?x=1"


def test_logout_ends_the_session_even_for_a_kept_copy_of_the_cookie(admin: Admin) -> None:
    login(admin.client)
    kept = admin.client.cookies.get("cc_session")
    response = admin.client.post("/logout", data={"csrf": csrf_of(admin.client)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert admin.client.get("/queue").status_code == 303
    admin.client.cookies.set("cc_session", kept)  # type: ignore[arg-type]
    assert admin.client.get("/queue").status_code == 303
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        assert [e.action for e in session.exec(select(AuditEntry))] == ["login", "logout"]


def test_a_new_password_or_deactivation_ends_existing_sessions(admin: Admin) -> None:
    login(admin.client)
    with session_scope(admin.engine) as session:  # type: ignore[arg-type]
        set_password(session, STAFF_EMAIL, "a brand new passphrase")
    assert admin.client.get("/queue").status_code == 303
    login(admin.client, password="a brand new passphrase")
    assert admin.client.get("/queue").status_code == 200
    with session_scope(admin.engine) as session:  # type: ignore[arg-type]
        session.exec(select(StaffUser)).one().active = False
    assert admin.client.get("/queue").status_code == 303
    assert login(admin.client, password="a brand new passphrase").status_code == 401


def test_review_through_the_pages(admin: Admin) -> None:
    login(admin.client)
    case = f"/cases/{admin.held_id}"
    refused = admin.client.post(f"{case}/codes", data={"csrf": csrf_of(admin.client), "codes": "Z99.999"})
    assert refused.headers["location"] == case
    assert "is not in the code tables" in admin.client.get(case).text
    assert "is not in the code tables" not in admin.client.get(case).text  # shown once

    admin.client.post(f"{case}/codes", data={"csrf": csrf_of(admin.client), "codes": "E11.9\nCPT 62321"})
    page = admin.client.get(case).text
    assert "Codes now: E11.9, 62321" in page and "Type 2 diabetes mellitus without complications" in page

    admin.client.post(f"{case}/approve", data={"csrf": csrf_of(admin.client)})
    page = admin.client.get(case).text
    assert "Approved." in page and "Approve and send" not in page
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        assert [o.status for o in session.exec(select(Outbox).order_by(Outbox.id))] == [
            OutboxStatus.cancelled, OutboxStatus.pending]
        assert session.get(Case, admin.held_id).status == CaseStatus.answered  # type: ignore[union-attr]
        actions = [(e.actor, e.action) for e in session.exec(select(AuditEntry).where(  # views are audited too
            AuditEntry.case_id.is_not(None), AuditEntry.action != "view"))]  # type: ignore[union-attr]
    assert actions == [(STAFF_EMAIL, "edit_codes"), (STAFF_EMAIL, "approve")]
    assert "edit codes" in page and "codes I10 -&gt; E11.9, 62321" in page

    again = admin.client.post(f"{case}/reject", data={"csrf": csrf_of(admin.client), "note": "x"})
    assert again.status_code == 303
    assert "not waiting for review" in admin.client.get(case).text


def test_reject_and_retry_through_the_pages(admin: Admin) -> None:
    login(admin.client)
    case = f"/cases/{admin.held_id}"
    admin.client.post(f"{case}/reject", data={"csrf": csrf_of(admin.client), "note": HOSTILE})
    with session_scope(admin.engine) as session:  # type: ignore[arg-type]
        row = session.exec(select(Outbox).where(Outbox.status == OutboxStatus.pending)).one()
        row.status, row.last_error = OutboxStatus.failed, "SMTP 550: <b>no</b> such user"
        reply_id = row.id
    page = admin.client.get(case).text
    assert "Send again" in page and "SMTP 550: &lt;b&gt;no&lt;/b&gt; such user" in page
    assert HOSTILE not in page and "&lt;script&gt;" in page
    admin.client.post(f"/replies/{reply_id}/retry", data={"csrf": csrf_of(admin.client)})
    assert "queued again" in admin.client.get(case).text
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        assert session.get(Outbox, reply_id).status == OutboxStatus.pending  # type: ignore[union-attr]
    refused = admin.client.post(f"/replies/{reply_id}/retry", data={"csrf": csrf_of(admin.client)})
    assert refused.headers["location"] == case
    assert "only a failed reply" in admin.client.get(case).text


def test_the_reply_html_is_served_only_for_its_own_case(admin: Admin) -> None:
    login(admin.client)
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        reply_id = session.exec(select(Outbox.id)).one()
    assert admin.client.get(f"/cases/{admin.held_id + 1}/replies/{reply_id}.html").status_code == 404
    assert admin.client.get("/cases/999").status_code == 404


def test_every_look_at_a_question_or_reply_is_audited(admin: Admin) -> None:
    login(admin.client)
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        reply_id = session.exec(select(Outbox.id)).one()
    page = admin.client.get(f"/cases/{admin.held_id}")
    assert page.status_code == 200
    assert admin.client.get(f"/cases/{admin.held_id}/replies/{reply_id}.html").status_code == 200
    assert admin.client.get("/cases/999").status_code == 404  # nothing there: nothing viewed
    assert admin.client.get(f"/cases/{admin.held_id}/replies/{reply_id + 1}.html").status_code == 404
    admin.client.get("/queue")  # the list shows no question text
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        views = [(e.actor, e.case_id, e.detail, e.at) for e in session.exec(select(AuditEntry)
                                                                             .where(AuditEntry.action == "view"))]
    assert views == [(STAFF_EMAIL, admin.held_id, "case page", admin.clock.at),
                     (STAFF_EMAIL, admin.held_id, f"reply {reply_id}", admin.clock.at)]
    assert "case page" in page.text  # the case's own history shows who looked


def test_accounts_page_and_actions(admin: Admin) -> None:
    login(admin.client)
    page = admin.client.get("/accounts").text
    assert "full@clinic.example" in page and ">0</td>" in page
    post = admin.client.post("/accounts", data={"csrf": csrf_of(admin.client), "email": "new@clinic.example",
                                               "tier": "plan", "extra_answers": "20"})
    assert post.headers["location"] == "/accounts?q=new%40clinic.example"
    assert "Registered new@clinic.example (plan)" in admin.client.get(post.headers["location"]).text
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        new = session.exec(select(Account).where(Account.email == "new@clinic.example")).one()
        full = session.exec(select(Account).where(Account.email == "full@clinic.example")).one()
    assert (new.tier, new.extra_answers) == (Tier.plan, 20)
    admin.client.post(f"/accounts/{full.id}/grant", data={"csrf": csrf_of(admin.client), "count": "3"})
    admin.client.post(f"/accounts/{full.id}/plan", data={"csrf": csrf_of(admin.client), "tier": "plan",
                                                          "extra_answers": "10"})
    admin.client.post(f"/accounts/{full.id}/active", data={"csrf": csrf_of(admin.client), "active": "0"})
    bad = admin.client.post(f"/accounts/{full.id}/grant", data={"csrf": csrf_of(admin.client), "count": "-4"})
    assert "must be between 1 and 10000" in admin.client.get(bad.headers["location"]).text
    dup = admin.client.post("/accounts", data={"csrf": csrf_of(admin.client), "email": "new@clinic.example"})
    assert "already registered" in admin.client.get(dup.headers["location"]).text
    with Session(admin.engine) as session:  # type: ignore[arg-type]
        full = session.get(Account, full.id)  # type: ignore[assignment]
        history = [(e.action, e.account_email) for e in session.exec(select(AuditEntry).order_by(AuditEntry.id))]
    assert (full.tier, full.extra_answers, full.active) == (Tier.plan, 10, False)
    assert history[1:] == [("register_account", "new@clinic.example"), ("grant_answers", "full@clinic.example"),
                           ("change_plan", "full@clinic.example"), ("deactivate", "full@clinic.example")]
    page = admin.client.get("/accounts?q=full").text
    assert "Reactivate" in page and "new@clinic.example" not in page.split("Recent account changes")[0]


def test_digest_page(admin: Admin) -> None:
    login(admin.client)
    page = admin.client.get("/digest").text
    assert "Waiting for review, oldest first: 1" in page
    assert f'href="/cases/{admin.held_id}"' in page
    assert "full@clinic.example" in page  # a registered account at its limit
