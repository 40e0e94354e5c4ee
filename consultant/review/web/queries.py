"""Read-side queries for the console's pages (the write side is consultant.review.actions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, or_, select
from sqlalchemy.orm import Session, selectinload

from consultant.models import (
    AWAITING_REVIEW,
    CASE_STATUSES,
    HELD_QUOTA,
    NEEDS_INFO,
    RECEIVED,
    UNVERIFIED,
    AuditEvent,
    Case,
    Requester,
    utcnow,
)
from consultant.quota import ledger
from consultant.settings import Settings

# What "the queue" means by default: everything a consultant still has to look at.
OPEN = (AWAITING_REVIEW, NEEDS_INFO, HELD_QUOTA, UNVERIFIED, RECEIVED)
STATUS_FILTERS = ("open", "all", *CASE_STATUSES)
QUEUE_LIMIT = 500


@dataclass
class QueueRow:
    case: Case
    age_hours: float
    overdue: bool
    due_soon: bool
    remaining: int
    flags: list[str]


def case_flags(case: Case) -> list[str]:
    """The flags a consultant should notice, in a fixed order, plus any others on the case."""
    raw = {*(case.flags or []), *(case.rule_hits or [])}
    shown: list[str] = []
    if any("phi" in f.lower() for f in raw):
        shown.append("PHI suspected")
    if case.status == NEEDS_INFO or "needs_info" in raw:
        shown.append("needs info")
    if case.status == HELD_QUOTA or "held_quota" in raw:
        shown.append("held for quota")
    shown += sorted(f for f in (case.flags or []) if "phi" not in f.lower()
                    and f not in ("needs_info", "held_quota"))
    return shown


def queue(session: Session, settings: Settings, *, status: str = "open", q: str = "",
          now: datetime | None = None) -> list[QueueRow]:
    """Cases for the queue page, oldest first, with their age against the turnaround target."""
    now = now or utcnow()
    query = select(Case).options(selectinload(Case.requester)).order_by(Case.created_at, Case.id)
    if status == "open":
        query = query.where(Case.status.in_(OPEN))
    elif status != "all":
        query = query.where(Case.status == status)
    q = q.strip()
    if q:
        like = f"%{q.lower()}%"
        # Codes live in a JSON column; its text form is searchable on SQLite and PostgreSQL.
        conditions: list[ColumnElement[bool]] = [func.lower(Requester.email).like(like), func.lower(Case.subject).like(like),
                      func.lower(cast(Case.codes, String)).like(like)]
        digits = q.upper().removeprefix("CC-")
        if digits.isdigit():
            conditions.append(Case.id == int(digits))
        query = query.join(Requester, Case.requester_id == Requester.id).where(or_(*conditions))
    cases = session.execute(query.limit(QUEUE_LIMIT)).scalars().all()
    balances = ledger.statuses(session, settings.quota, list({c.requester_id: c.requester
                                                               for c in cases}.values()), now)
    target = max(settings.console.turnaround_hours, 0.01)
    rows = []
    for case in cases:
        age = (now - case.created_at).total_seconds() / 3600
        rows.append(QueueRow(case=case, age_hours=age, overdue=age > target,
                             due_soon=target * 0.75 < age <= target,
                             remaining=balances[case.requester_id].answers_remaining,
                             flags=case_flags(case)))
    return rows


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Case.status, func.count(Case.id)).group_by(Case.status)).all()
    counts = {s: 0 for s in CASE_STATUSES}
    counts.update({s: int(n) for s, n in rows})
    return counts


def audit_for(session: Session, case_id: int) -> list[AuditEvent]:
    return list(session.execute(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                .order_by(AuditEvent.at, AuditEvent.id)).scalars())


def requesters(session: Session, settings: Settings, q: str = "", limit: int = 200) -> list[dict[str, Any]]:
    query = select(Requester).order_by(Requester.email).limit(limit)
    if q.strip():
        query = query.where(func.lower(Requester.email).like(f"%{q.strip().lower()}%"))
    found = list(session.execute(query).scalars().all())
    balances = ledger.statuses(session, settings.quota, found)
    open_counts = dict(session.execute(
        select(Case.requester_id, func.count(Case.id))
        .where(Case.requester_id.in_([r.id for r in found]), Case.status.in_(OPEN))
        .group_by(Case.requester_id)).all()) if found else {}
    return [{"requester": r, "balance": balances[r.id], "used": balances[r.id].answers_used,
             "allowed": balances[r.id].answers_allowed,
             "remaining": balances[r.id].answers_remaining,
             "open_cases": int(open_counts.get(r.id, 0))} for r in found]
