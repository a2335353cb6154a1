"""The status enums of the queue tables, apart from the tables.

`models.py` uses them for its columns (and re-exports them); they live here so
that code running where SQLModel is not imported (the match helper process
classifying fetched mail, `classify.py`) can name a status.
"""

from __future__ import annotations

import enum


class CaseStatus(str, enum.Enum):
    received = "received"
    needs_review = "needs_review"
    answered = "answered"
    over_quota = "over_quota"
    ignored = "ignored"
    rejected = "rejected"
    quarantined = "quarantined"
    failed = "failed"


class OutboxStatus(str, enum.Enum):
    held = "held"  # waiting for staff review; never sent as is
    pending = "pending"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"


class Tier(str, enum.Enum):
    guest = "guest"
    free = "free"
    plan = "plan"
