"""The `consultant` command: argument handling only; the work is in the library.

    consultant run [--demo]       poll on a schedule until SIGTERM / Ctrl-C
    consultant run-once           process the mailbox once and exit
    consultant ask TEXT [--from ADDRESS] [--subject S]
                                  email a question to the consultant
    consultant codes ...          the code tables (load, show, search, stats, import)
    consultant suggest ...        the matcher (--json TEXT, --batch)
    consultant report [--html FILE]
                                  queue summary and the daily digest (or the digest as a page)
    consultant admin [--host H] [--port P]
                                  serve the staff admin pages
    consultant staff add EMAIL [--password-stdin]
                                  create a staff login for the admin pages
    consultant purge [--days N]   purge question text older than the retention period

A bad setting prints one line naming it and exits 2; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from consultant import __version__
from consultant.errors import ConfigError, ConsultantError, SendError
from consultant.settings import Settings, load_settings

log = logging.getLogger("consultant")

DEMO_QUESTIONS = [
    ("coder@clinic.example", "CPT 62310", "What is CPT code 62310?"),
    ("biller@practice.example", "dx code", "dx code for HTN with CKD 3a?"),
    ("np@familycare.example", "Diabetes code", "Is E11.9 still a valid code? Patient has type 2 diabetes, no complications."),
    ("md@orthogroup.example", "wrist", "Broken left wrist, first visit. Which code?"),
    ("coder@clinic.example", "one more", "And what is HCPCS J3301?"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consultant", description="CaseConsultant: the email coding consultant.")
    parser.add_argument("--version", action="version", version=f"consultant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="poll the mailbox on a schedule until stopped")
    run.add_argument("--demo", action="store_true", help="on the embedded mailbox, send sample questions at start")
    sub.add_parser("run-once", help="process the mailbox once and exit")

    ask = sub.add_parser("ask", help="email a question to the consultant")
    ask.add_argument("text", help="the question")
    ask.add_argument("--from", dest="sender", default="asker@example.org", help="the sender address")
    ask.add_argument("--subject", default="Coding question", help="the subject line")

    report = sub.add_parser("report", help="print a queue summary and the daily digest")
    report.add_argument("--html", metavar="FILE", help="write the daily digest as an HTML page to FILE instead")

    admin = sub.add_parser("admin", help="serve the staff admin pages")
    admin.add_argument("--host", help="listen address (default CONSULTANT_ADMIN_HOST, 127.0.0.1)")
    admin.add_argument("--port", type=int, help="port (default CONSULTANT_ADMIN_PORT, 8080)")

    purge = sub.add_parser("purge", help="purge question text older than the retention period now")
    purge.add_argument("--days", type=int, default=None, help="override CONSULTANT_RETENTION_DAYS")

    staff = sub.add_parser("staff", help="staff logins for the admin pages")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    staff_add = staff_sub.add_parser("add", help="create a staff login (asks for the password)")
    staff_add.add_argument("email", help="the staff member's address")
    staff_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    from consultant.codes.commands import add_codes_parser
    from consultant.match.commands import add_suggest_parser

    add_codes_parser(sub)
    add_suggest_parser(sub)
    return parser


QUIET_LOGGERS = ("alembic", "apscheduler", "mail.log", "uvicorn.access")


def configure_logging(settings: Settings) -> None:
    """Our own loggers at the configured level; chatty libraries only from WARNING
    (aiosmtpd's mail.log would otherwise print every envelope address)."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        return dispatch(args, settings)
    except ConfigError as exc:
        print(f"consultant: configuration error: {exc}", file=sys.stderr)
        return 2
    except ConsultantError as exc:
        print(f"consultant: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from consultant.services import open_engine

    if args.command == "ask":
        return ask(settings, text=args.text, sender=args.sender, subject=args.subject)
    if args.command == "codes":
        from consultant.codes.commands import run_codes_command

        return run_codes_command(args, open_engine(settings, load_codes=False))
    if args.command == "purge":
        from consultant.retention import purge_expired

        days = args.days if args.days is not None else settings.retention_days
        if days < 1:
            raise ConfigError("--days", "must be at least 1")
        purged = purge_expired(open_engine(settings, load_codes=False), now=datetime.now(UTC), days=days)
        print(f"Purged {purged} cases older than {days} days.")
        return 0
    if args.command == "staff":
        return add_staff(open_engine(settings, load_codes=False), email=args.email, from_stdin=args.password_stdin)
    engine = open_engine(settings)
    if args.command == "suggest":
        from consultant.match.commands import run_suggest_command

        return run_suggest_command(args, engine)
    if args.command == "report":
        return report(settings, engine, html=args.html)
    if args.command == "admin":
        import dataclasses

        from consultant.admin.server import serve
        from consultant.settings import validate_admin

        overrides = {k: v for k, v in (("admin_host", args.host), ("admin_port", args.port)) if v is not None}
        settings = dataclasses.replace(settings, **overrides)
        validate_admin(settings)
        serve(settings, engine)
        return 0
    return run_service(settings, engine, forever=args.command == "run", demo=getattr(args, "demo", False))


def run_service(settings: Settings, engine, *, forever: bool, demo: bool) -> int:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from consultant.embedded import start_embedded
    from consultant.pipeline import run_once
    from consultant.scheduling import run_forever
    from consultant.services import build_services, check_mail, imap_config

    embedded = None
    if settings.embedded:
        embedded = start_embedded(
            address=settings.address,
            imap_port=settings.embedded_imap_port,
            smtp_port=settings.embedded_smtp_port,
            outgoing=Path("var/outgoing"),
        )
        print(
            f"Embedded mailbox running: send mail to {settings.address} via SMTP 127.0.0.1:"
            f"{settings.embedded_smtp_port} (or `consultant ask \"...\"`).",
            file=sys.stderr,
        )
    elif demo:
        raise ConfigError("--demo", "sends sample questions only on the embedded mailbox (unset CONSULTANT_IMAP_HOST)")
    services = None
    try:
        check_mail(settings, embedded)
        services = build_services(settings, engine, embedded=embedded)
        if not forever:
            summary = run_once(services)
            print(
                f"fetched {summary.fetched}, acknowledged {summary.acknowledged}, "
                f"sent {summary.sent}, retry {summary.send_retry}, failed {summary.send_failed}"
            )
            return 0

        def send_demo() -> None:
            for sender, subject, text in DEMO_QUESTIONS:
                ask(settings, text=text, sender=sender, subject=subject)
            print(f"Sent {len(DEMO_QUESTIONS)} sample questions; replies follow. Ctrl-C to stop.", file=sys.stderr)

        woken = " (and at once on new mail: IMAP IDLE)" if settings.imap_idle else ""
        print(f"Polling every {settings.poll_seconds} s{woken}; Ctrl-C or SIGTERM to stop.", file=sys.stderr)
        run_forever(
            services,
            poll_seconds=settings.poll_seconds,
            on_started=send_demo if demo else None,
            digest_to=settings.staff_addresses,
            digest_at=settings.digest_time,
            admin_url=settings.admin_base_url,
            retention_days=settings.retention_days,
            idle=imap_config(settings, embedded) if settings.imap_idle else None,
        )
        return 0
    finally:
        if services is not None and hasattr(services.matcher, "close"):
            services.matcher.close()  # the match helper process (CONSULTANT_MATCH_PROCESS)
        if embedded is not None:
            embedded.stop()


def report(settings: Settings, engine, *, html: str | None) -> int:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from consultant.db import session_scope
    from consultant.quota import QuotaPolicy
    from consultant.report import summary_text, write_html

    policy = QuotaPolicy(guest_answers=settings.guest_answers, free_answers=settings.free_answers)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        if html:
            write_html(session, Path(html), now=now, admin_url=settings.admin_base_url, policy=policy)
            print(f"Wrote the daily digest to {html}")
        else:
            print(summary_text(session, now=now, admin_url=settings.admin_base_url, policy=policy))
    return 0


def add_staff(engine, *, email: str, from_stdin: bool) -> int:  # type: ignore[no-untyped-def]
    """`consultant staff add EMAIL`: the password is asked twice, or read from standard input."""
    import getpass

    from consultant.db import session_scope
    from consultant.staff import StaffError, create_staff

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {email}: ")
        if getpass.getpass("Same password again: ") != password:
            print("consultant: the two passwords differ; nothing changed", file=sys.stderr)
            return 1
    try:
        with session_scope(engine) as session:
            user = create_staff(session, email, password, now=datetime.now(UTC))
    except StaffError as exc:
        print(f"consultant: {exc}", file=sys.stderr)
        return 1
    print(f"Staff login created for {user.email}")
    return 0


def ask(settings: Settings, *, text: str, sender: str, subject: str) -> int:
    """Email a question to the consultant through the configured (or embedded) SMTP server."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = settings.address
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    msg.set_content(text)
    from consultant.outbox import SmtpConfig, SmtpTransport
    from consultant.services import smtp_config

    if settings.embedded:
        config = SmtpConfig(host="127.0.0.1", port=settings.embedded_smtp_port, security="none", timeout=30)
    else:
        config = smtp_config(settings)
    transport = SmtpTransport(config)
    try:
        transport.send(msg.as_bytes(), sender=sender, recipients=[settings.address])
    except SendError as exc:
        setting = "CONSULTANT_EMBEDDED_SMTP_PORT" if settings.embedded else "CONSULTANT_SMTP_HOST"
        hint = " (is `consultant run` running?)" if settings.embedded else ""
        raise ConfigError(setting, f"{exc}{hint}") from None
    finally:
        transport.close()
    print(f"Sent to {settings.address}: {subject}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
