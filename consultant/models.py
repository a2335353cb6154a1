"""SQLModel tables, and nothing else.

The queue is one table (`Case`) with a status enum; reports are counts of it.
Values passed between pipeline stages are frozen dataclasses in their own
modules, not these tables.

Tables:
  CodeRelease  which code-set releases are loaded (one row per system+release)
  Code         every code of every system (ICD-10-CM, ICD-10-PCS, CPT, HCPCS, MOD)
  Account      a sender address with its tier and how many answers it has used
  Case         one received message and what became of it
  Outbox       a reply written before it is sent; the send stage drains it
  PollState    per-mailbox bookkeeping (UIDVALIDITY seen, health of the last poll)
  Lease        a named lease held by one worker at a time (only one polls a mailbox)
  StaffUser    a staff login for the admin pages
  AuditEntry   who did what to which case or account, and when
  Registration a pending "register" request: the one-time code sent to an address
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from consultant.statuses import CaseStatus, OutboxStatus, Tier

__all__ = [
    "Account", "AuditEntry", "Case", "CaseStatus", "Code", "CodeRelease", "Lease", "Outbox", "OutboxStatus",
    "PollState", "Registration", "StaffUser", "Tier",
]


class CodeRelease(SQLModel, table=True):
    __tablename__ = "code_release"
    __table_args__ = (UniqueConstraint("system", "release"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    system: str = Field(max_length=16)
    release: str = Field(max_length=80)
    source: str = Field(default="", max_length=200)
    code_count: int = 0
    billable_count: int = 0
    sample: bool = False
    loaded_at: datetime


class Code(SQLModel, table=True):
    """One code of one system.

    `code` is the canonical key: upper case, no dot (E119, S52502A, 62310).
    `display` is the standard form people write (E11.9, S52.502A, 62310).
    """

    __tablename__ = "code"
    __table_args__ = (
        UniqueConstraint("system", "code"),
        Index("ix_code_code", "code"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    system: str = Field(max_length=16)
    code: str = Field(max_length=16)
    display: str = Field(max_length=16)
    kind: str = Field(default="code", max_length=12)  # chapter, block, category, code
    short: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    official: str = Field(sa_column=Column(Text, nullable=False))
    plain: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    billable: bool = False
    parent: Optional[str] = Field(default=None, max_length=16)
    chapter: Optional[str] = Field(default=None, max_length=16)
    block: Optional[str] = Field(default=None, max_length=16)
    status: str = Field(default="valid", max_length=12)  # valid, deleted
    change: Optional[str] = Field(default=None, max_length=12)  # new, revised (this release)
    effective: Optional[str] = Field(default=None, max_length=10)  # ISO date
    deleted_on: Optional[str] = Field(default=None, max_length=10)  # ISO date
    replaced_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    release: str = Field(default="", max_length=80)


class Account(SQLModel, table=True):
    __tablename__ = "account"

    id: Optional[int] = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    tier: Tier = Tier.guest
    extra_answers: int = 0  # plan answers, or grants by staff
    answered: int = 0
    active: bool = True
    created_at: datetime


class Case(SQLModel, table=True):
    """One message from the mailbox. Keyed by (mailbox, uidvalidity, uid)."""

    __tablename__ = "case"
    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid"),
        Index("ix_case_status_received", "status", "received_at"),
        Index("ix_case_message_id", "message_id"),
        Index("ix_case_sender", "sender"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=200)
    uidvalidity: int
    uid: int
    message_id: str = Field(default="", max_length=998)
    content_hash: str = Field(default="", max_length=64)
    sender: str = Field(default="", max_length=320)
    sender_name: str = Field(default="", max_length=200)  # the From display name, for the greeting
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    question: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    reference_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # thread
    raw: Optional[bytes] = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    attachments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: CaseStatus = CaseStatus.received
    reason: str = Field(default="", max_length=200)
    kind: str = Field(default="question", max_length=20)  # question, register, confirm, balance, help
    confidence: float = 0.0
    codes: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    findings: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    flags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    claimed_by: Optional[str] = Field(default=None, max_length=100)
    claimed_until: Optional[datetime] = None
    received_at: datetime
    updated_at: datetime
    replied_at: Optional[datetime] = None
    purged_at: Optional[datetime] = None


class Outbox(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_created", "recipient", "created_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    case_id: Optional[int] = Field(default=None, foreign_key="case.id")
    message_id: str = Field(max_length=998, unique=True)
    recipient: str = Field(max_length=320)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: OutboxStatus = OutboxStatus.pending
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    claimed_by: Optional[str] = Field(default=None, max_length=100)
    claimed_until: Optional[datetime] = None
    sending_since: Optional[datetime] = None  # set before SMTP, cleared after: a crash leaves it set
    created_at: datetime
    sent_at: Optional[datetime] = None


class PollState(SQLModel, table=True):
    __tablename__ = "poll_state"

    mailbox: str = Field(primary_key=True, max_length=200)
    uidvalidity: int = 0
    last_poll_at: Optional[datetime] = None
    last_ok_at: Optional[datetime] = None
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    consecutive_failures: int = 0
    not_before: Optional[datetime] = None  # a throttling server asked us to wait until then


class Lease(SQLModel, table=True):
    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=200)
    holder: str = Field(max_length=200)
    expires_at: datetime


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_user"

    id: Optional[int] = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    password_hash: str = Field(max_length=300)
    active: bool = True
    created_at: datetime
    last_login_at: Optional[datetime] = None


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_case", "case_id"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime
    actor: str = Field(max_length=320)  # a staff address, or "system"
    action: str = Field(max_length=50)
    case_id: Optional[int] = Field(default=None, foreign_key="case.id")
    account_email: Optional[str] = Field(default=None, max_length=320)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Registration(SQLModel, table=True):
    __tablename__ = "registration"

    id: Optional[int] = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, index=True)
    code_hash: str = Field(max_length=128)
    created_at: datetime
    expires_at: datetime
    used_at: Optional[datetime] = None
    attempts: int = 0
