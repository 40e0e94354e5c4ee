"""Read-side queries for the console's pages (the write side is consultant.review.actions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from sqlalchemy import ColumnElement, String, cast, func, or_, select, tuple_
from sqlalchemy import case as case_when
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


# Ids in URLs are bounded to PostgreSQL's integer range: /cases/99999999999999999999 is a 404,
# not an "integer out of range" error from the database.
DbId = Annotated[int, Path(ge=1, le=2**31 - 1)]
CaseId = DbId


def like_pattern(text: str) -> str:
    """A case-insensitive LIKE pattern matching ``text`` anywhere, its ``%`` and ``_`` literal
    (use with ``escape="\\"``): a search for "50%" must not match every subject."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class QueueRow:
    case: Case
    age_hours: float
    overdue: bool
    due_soon: bool
    remaining: int
    flags: list[str]


# What a consultant reads for a flag the pipeline records; an unknown flag is shown with its
# underscores as spaces rather than hidden.
FLAG_LABELS = {
    "data_older_than_dos": "code data older than the date of service",
    "draft_failed": "automatic draft failed",
}


def flag_label(flag: str) -> str:
    return FLAG_LABELS.get(flag, flag.replace("_", " "))


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
    shown += sorted(flag_label(f) for f in (case.flags or []) if "phi" not in f.lower()
                    and f not in ("needs_info", "held_quota"))
    return shown


# The queue puts what can be approved now first (a held or undrafted case cannot), then age.
APPROVABLE = (AWAITING_REVIEW, NEEDS_INFO)


def queue_order() -> list[Any]:
    return [case_when((Case.status.in_(APPROVABLE), 0), else_=1), Case.created_at, Case.id]


def neighbours(session: Session, case: Case) -> tuple[int | None, int | None]:
    """The approvable cases before and after ``case`` in the queue's order (oldest first)."""
    key = (Case.created_at, Case.id)
    mine = (case.created_at, case.id)
    approvable = Case.status.in_(APPROVABLE)
    before = session.execute(select(Case.id).where(approvable, tuple_(*key) < tuple_(*mine))
                             .order_by(Case.created_at.desc(), Case.id.desc()).limit(1)).scalar()
    after = session.execute(select(Case.id).where(approvable, tuple_(*key) > tuple_(*mine))
                            .order_by(*key).limit(1)).scalar()
    return before, after


def next_after(session: Session, case_id: int) -> int | None:
    """Where the console goes after acting on a case: the next approvable case in the queue's
    order, else the first one left (the queue wraps round)."""
    case = session.get(Case, case_id)
    if case is not None:
        _, after = neighbours(session, case)
        if after is not None:
            return after
    return session.execute(select(Case.id).where(Case.status.in_(APPROVABLE), Case.id != case_id)
                           .order_by(Case.created_at, Case.id).limit(1)).scalar()


def queue(session: Session, settings: Settings, *, status: str = "open", q: str = "",
          now: datetime | None = None) -> list[QueueRow]:
    """Cases for the queue page, oldest first, with their age against the turnaround target."""
    now = now or utcnow()
    query = select(Case).options(selectinload(Case.requester)).order_by(*queue_order())
    if status == "open":
        query = query.where(Case.status.in_(OPEN))
    elif status != "all":
        query = query.where(Case.status == status)
    q = q.strip()
    if q:
        like = like_pattern(q)
        # Codes live in a JSON column; its text form is searchable on SQLite and PostgreSQL.
        conditions: list[ColumnElement[bool]] = [
            func.lower(column).like(like, escape="\\")
            for column in (Requester.email, Case.subject, cast(Case.codes, String))]
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
        query = query.where(func.lower(Requester.email).like(like_pattern(q.strip()), escape="\\"))
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
