"""The admin's routes: login and logout, queue, case, review actions, accounts, digest.

    GET  /login, POST /login, POST /logout
    GET  /                      -> /queue
    GET  /queue                 counts per status; cases, newest first; filters and search
    GET  /cases/{id}            one case: question, findings, codes, replies, mailbox ids, history
    GET  /cases/{id}/replies/{reply}.html   a reply's HTML part (sandboxed, framed by the case page)
    POST /cases/{id}/approve | /codes | /reject
    POST /replies/{reply}/retry
    GET  /accounts, POST /accounts, POST /accounts/{id}/plan | /grant | /active
    GET  /digest

Every view of a case page or a reply writes an audit row (who, when, which).
Pages (GET) without a valid session redirect to /login and show nothing;
actions (POST) without one answer 401, and with a wrong CSRF token 403.
Database work runs in the thread pool, off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from consultant.admin import accounts as account_actions
from consultant.admin.app import REPLY_CSP, AdminState
from consultant.admin.auth import StaffSession, csrf_ok
from consultant.admin.pages import (
    STATUSES,
    accounts_page,
    case_page,
    parse_queue_filter,
    queue_page,
    record_view,
    reply_html,
)
from consultant.db import session_scope
from consultant.digest import build_digest
from consultant.models import AuditEntry, CaseStatus, Outbox
from consultant.review import ReviewError, approve_case, edit_codes, record_audit, reject_case, retry_send
from consultant.staff import verify_staff

log = logging.getLogger(__name__)

PageHandler = Callable[[Request, AdminState, StaffSession], Awaitable[Response]]
ActionHandler = Callable[[Request, AdminState, StaffSession, FormData], Awaitable[Response]]


# -- guards ------------------------------------------------------------------
async def _staff(request: Request) -> tuple[AdminState, StaffSession | None]:
    state: AdminState = request.app.state.admin
    staff = await run_in_threadpool(state.sessions.read, request, state.engine, now=state.now())
    return state, staff


def page(handler: PageHandler, *, redirect: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """A GET page: without a session, a redirect to the login page (or 401), and nothing else."""

    async def endpoint(request: Request) -> Response:
        state, staff = await _staff(request)
        if staff is None:
            if not redirect:
                return PlainTextResponse("Login required.", status_code=401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return await handler(request, state, staff)

    return endpoint


def action(handler: ActionHandler) -> Callable[[Request], Awaitable[Response]]:
    """A POST action: 401 without a session, 403 without the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        state, staff = await _staff(request)
        if staff is None:
            return PlainTextResponse("Login required.", status_code=401)
        form = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
        if not csrf_ok(staff, form.get("csrf")):
            log.warning("refused a %s without a valid CSRF token", request.url.path)
            return PlainTextResponse("Invalid or missing CSRF token: reload the page and try again.", status_code=403)
        return await handler(request, state, staff, form)

    return endpoint


async def _read(state: AdminState, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    def work() -> Any:
        with Session(state.engine, expire_on_commit=False) as session:
            return fn(session, *args, **kwargs)

    return await run_in_threadpool(work)


async def _perform(
    state: AdminState, staff: StaffSession, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[Any, str]:
    """Run one staff action in its own transaction; (result, "") or (None, the reason it was refused)."""

    def work() -> Any:
        with session_scope(state.engine) as session:
            return fn(session, *args, actor=staff.email, now=state.now(), **kwargs)

    try:
        return await run_in_threadpool(work), ""
    except ReviewError as exc:
        return None, str(exc)


def _back(state: AdminState, url: str, *, ok: str = "", error: str = "") -> Response:
    response = RedirectResponse(url, status_code=303)
    if ok or error:
        state.sessions.flash(response, error or ok, kind="error" if error else "ok", now=state.now())
    return response


def _text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


async def _render(request: Request, state: AdminState, staff: StaffSession, name: str,
                  context: dict[str, Any], *, status_code: int = 200) -> Response:
    flash = state.sessions.read_flash(request, now=state.now())
    response = state.render(request, name, {"staff": staff, "flash": flash, **context}, status_code=status_code)
    state.sessions.clear_flash(request, response)
    return response


# -- login -------------------------------------------------------------------
def _safe_next(target: str) -> str:
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return "/queue"


async def _login_page(request: Request, state: AdminState, *, next_url: str, error: str = "",
                      status_code: int = 200) -> Response:
    token = state.sessions.new_login_token()
    response = state.render(request, "login.html", {"staff": None, "flash": None, "csrf": token,
                                                     "next": next_url, "error": error}, status_code=status_code)
    state.sessions.remember_login_token(response, token)
    return response


async def login_form(request: Request) -> Response:
    state, staff = await _staff(request)
    next_url = _safe_next(request.query_params.get("next", "/queue"))
    if staff is not None:
        return RedirectResponse(next_url, status_code=303)
    return await _login_page(request, state, next_url=next_url)


async def login(request: Request) -> Response:
    state: AdminState = request.app.state.admin
    form = await request.form(max_files=0, max_fields=10, max_part_size=8 * 1024)
    next_url = _safe_next(_text(form, "next") or "/queue")
    if not state.sessions.check_login_token(request, _text(form, "csrf")):
        return await _login_page(request, state, next_url=next_url, status_code=403,
                                 error="The form had expired. Please log in again.")
    email, password = _text(form, "email").strip().lower()[:320], _text(form, "password")
    client = request.client.host if request.client else "unknown"
    keys = [f"email:{email}", f"client:{client}"]
    now = state.now()
    if state.throttle.blocked(keys, now=now):
        return await _login_page(request, state, next_url=next_url, status_code=429,
                                 error="Too many failed logins. Wait 15 minutes and try again.")

    def check() -> Any:
        with session_scope(state.engine) as session:
            user = verify_staff(session, email, password, now=now)
            if user is not None:
                record_audit(session, actor=user.email, action="login", now=now)
            return user

    user = await run_in_threadpool(check)
    if user is None:
        state.throttle.failed(keys, now=now)
        log.warning("failed staff login from %s", client)
        return await _login_page(request, state, next_url=next_url, status_code=401,
                                 error="Wrong address or password.")
    state.throttle.succeeded(keys)
    response = RedirectResponse(next_url, status_code=303)
    state.sessions.start(response, user, now=now)
    state.sessions.forget_login_token(response)
    return response


async def logout(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    def note() -> None:
        with session_scope(state.engine) as session:
            record_audit(session, actor=staff.email, action="logout", now=state.now())

    await run_in_threadpool(note)
    response = RedirectResponse("/login", status_code=303)
    state.sessions.end(response, staff, now=state.now())
    return response


# -- pages -------------------------------------------------------------------
async def home(request: Request, state: AdminState, staff: StaffSession) -> Response:
    return RedirectResponse("/queue", status_code=303)


async def queue(request: Request, state: AdminState, staff: StaffSession) -> Response:
    flt = parse_queue_filter(request.query_params)
    data = await _read(state, queue_page, flt, page_size=state.config.page_size)
    return await _render(request, state, staff, "queue.html", {"q": data, "statuses": STATUSES})


async def case(request: Request, state: AdminState, staff: StaffSession) -> Response:
    case_id = request.path_params["case_id"]
    await _perform(state, staff, record_view, case_id, what="case page")  # recorded first: the page lists it
    data = await _read(state, case_page, case_id, policy=state.config.policy)
    if data is None:
        return await _render(request, state, staff, "missing.html", {"what": "case"}, status_code=404)
    return await _render(request, state, staff, "case.html", {"c": data, "poll_seconds": state.config.poll_seconds})


async def reply_part(request: Request, state: AdminState, staff: StaffSession) -> Response:
    case_id, reply_id = request.path_params["case_id"], request.path_params["reply_id"]
    html = await _read(state, reply_html, case_id, reply_id)
    if html is None:
        return PlainTextResponse("Not found.", status_code=404)
    await _perform(state, staff, record_view, case_id, what=f"reply {reply_id}")
    return HTMLResponse(html, headers={"Content-Security-Policy": REPLY_CSP, "X-Frame-Options": "SAMEORIGIN"})


async def accounts(request: Request, state: AdminState, staff: StaffSession) -> Response:
    page_text = request.query_params.get("page", "1")
    number = int(page_text) if page_text.isdigit() and len(page_text) < 7 else 1
    data = await _read(state, accounts_page, q=request.query_params.get("q", ""), page=number,
                       policy=state.config.policy)
    history = await _read(state, _account_history)
    return await _render(request, state, staff, "accounts.html", {"a": data, "history": history})


def _account_history(session: Session, limit: int = 20) -> list[AuditEntry]:
    from sqlmodel import select

    stmt = select(AuditEntry).where(AuditEntry.account_email.is_not(None))  # type: ignore[union-attr]
    return list(session.exec(stmt.order_by(AuditEntry.id.desc()).limit(limit)))  # type: ignore[union-attr]


async def digest(request: Request, state: AdminState, staff: StaffSession) -> Response:
    data = await _read(state, build_digest, now=state.now(), policy=state.config.policy)
    return await _render(request, state, staff, "digest.html", {"d": data})


# -- review actions ----------------------------------------------------------
def _case_url(case_id: int) -> str:
    return f"/cases/{case_id}"


async def approve(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    case_id = request.path_params["case_id"]
    cfg = state.config
    status, error = await _perform(state, staff, approve_case, case_id, policy=cfg.policy, address=cfg.address)
    if status == CaseStatus.over_quota:
        ok = "The sender has no answer left: the over-quota notice was queued instead of the reply."
    else:
        ok = f"Approved. The reply is queued and goes out with the worker's next poll (every {cfg.poll_seconds} s)."
    return _back(state, _case_url(case_id), ok=ok, error=error)


async def change_codes(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    case_id = request.path_params["case_id"]
    cfg = state.config
    chosen, error = await _perform(state, staff, edit_codes, case_id, _text(form, "codes"), policy=cfg.policy,
                                   address=cfg.address)
    ok = ""
    if not error:
        listed = ", ".join(s.code for s in chosen) or "none (the no-code reply)"
        ok = f"Codes now: {listed}. The reply below was written again; approve it to send it."
    return _back(state, _case_url(case_id), ok=ok, error=error)


async def reject(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    case_id = request.path_params["case_id"]
    cfg = state.config
    _, error = await _perform(state, staff, reject_case, case_id, _text(form, "note"), policy=cfg.policy,
                              address=cfg.address)
    return _back(state, _case_url(case_id), ok="Rejected. The note to the sender is queued.", error=error)


async def retry(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    reply_id = request.path_params["reply_id"]
    row, error = await _perform(state, staff, retry_send, reply_id)
    if error:
        case_id = await _read(state, lambda s: getattr(s.get(Outbox, reply_id), "case_id", None))
        return _back(state, _case_url(case_id) if case_id else "/queue", error=error)
    target = _case_url(row.case_id) if row.case_id else "/queue"
    return _back(state, target, ok="The reply is queued again; the worker sends it with its next poll.")


# -- account actions ---------------------------------------------------------
def _accounts_url(email: str | None = None) -> str:
    return f"/accounts?q={quote(email)}" if email else "/accounts"


async def register(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    account, error = await _perform(state, staff, account_actions.register_account, _text(form, "email"),
                                    tier=_text(form, "tier") or "free", extra_answers=_text(form, "extra_answers") or 0)
    if error:
        return _back(state, _accounts_url(), error=error)
    return _back(state, _accounts_url(account.email), ok=f"Registered {account.email} ({account.tier.value}).")


async def plan(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    account, error = await _perform(state, staff, account_actions.change_plan, request.path_params["account_id"],
                                    tier=_text(form, "tier"), extra_answers=_text(form, "extra_answers") or 0)
    if error:
        return _back(state, _accounts_url(), error=error)
    return _back(state, _accounts_url(account.email), ok=f"{account.email}: plan changed.")


async def grant(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    account, error = await _perform(state, staff, account_actions.grant_answers, request.path_params["account_id"],
                                    _text(form, "count"))
    if error:
        return _back(state, _accounts_url(), error=error)
    return _back(state, _accounts_url(account.email), ok=f"{account.email}: answers granted.")


async def activate(request: Request, state: AdminState, staff: StaffSession, form: FormData) -> Response:
    active = _text(form, "active") == "1"
    account, error = await _perform(state, staff, account_actions.set_active, request.path_params["account_id"],
                                    active)
    if error:
        return _back(state, _accounts_url(), error=error)
    word = "reactivated" if active else "deactivated"
    return _back(state, _accounts_url(account.email), ok=f"{account.email}: {word}.")


def routes() -> list[Route]:
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", action(logout), methods=["POST"]),
        Route("/", page(home), methods=["GET"]),
        Route("/queue", page(queue), methods=["GET"]),
        Route("/cases/{case_id:int}", page(case), methods=["GET"]),
        Route("/cases/{case_id:int}/replies/{reply_id:int}.html", page(reply_part, redirect=False), methods=["GET"]),
        Route("/cases/{case_id:int}/approve", action(approve), methods=["POST"]),
        Route("/cases/{case_id:int}/codes", action(change_codes), methods=["POST"]),
        Route("/cases/{case_id:int}/reject", action(reject), methods=["POST"]),
        Route("/replies/{reply_id:int}/retry", action(retry), methods=["POST"]),
        Route("/accounts", page(accounts), methods=["GET"]),
        Route("/accounts", action(register), methods=["POST"]),
        Route("/accounts/{account_id:int}/plan", action(plan), methods=["POST"]),
        Route("/accounts/{account_id:int}/grant", action(grant), methods=["POST"]),
        Route("/accounts/{account_id:int}/active", action(activate), methods=["POST"]),
        Route("/digest", page(digest), methods=["GET"]),
    ]
