"""Read-side queries for the console's pages (the write side is consultant.review.actions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import Path
from sqlalchemy import ColumnElement, String, cast, func, or_, select
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
    Draft,
    Requester,
    utcnow,
)
from consultant.quota import ledger
from consultant.review import sla
from consultant.settings import Settings

# What "the queue" means by default: everything a consultant still has to look at.
OPEN = (AWAITING_REVIEW, NEEDS_INFO, HELD_QUOTA, UNVERIFIED, RECEIVED)
STATUS_FILTERS = ("open", "all", *CASE_STATUSES)
HELD = (HELD_QUOTA, UNVERIFIED)


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
    due: sla.Due | None
    remaining: int
    flags: list[str]
    version: int  # the latest draft version, carried by bulk actions (optimistic locking)


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


# Every sort puts what can be approved now first (a held or undrafted case cannot), then its key.
APPROVABLE = (AWAITING_REVIEW, NEEDS_INFO)
SORTS = {"age": "oldest first", "sla": "SLA due soonest", "requester": "requester A-Z",
         "type": "question type"}
# Filters narrow the chosen status; several combine (mine + PHI: my cases with PHI).
FILTERS = {"mine": "mine", "unassigned": "unassigned", "phi": "PHI", "needs_info": "needs info",
           "held": "held"}
PAGE_SIZE = 50
# The queue's order is computed over at most this many cases (ids only); beyond, narrow it.
QUEUE_LIMIT = 5000


@dataclass(frozen=True)
class QueueView:
    """What the consultant chose on the queue page; carried to the case pages (their next and
    previous links, and where an approval goes) as the same query string, so "next" follows
    the queue the consultant is working, not some other order."""

    status: str = "open"
    q: str = ""
    filters: tuple[str, ...] = ()
    sort: str = "age"
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, Any] | Any) -> QueueView:
        """From request query parameters or a form (anything with get/getlist), each value
        checked against the known ones: the result is safe to put back into URLs."""
        def getlist(name: str) -> list[str]:
            if hasattr(params, "getlist"):
                return [str(v) for v in params.getlist(name)]
            value = params.get(name)
            return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]

        status = str(params.get("status") or "open")
        sort = str(params.get("sort") or "age")
        page = str(params.get("page") or "1")
        filters = tuple(f for f in FILTERS if f in getlist("f"))
        if "mine" in filters and "unassigned" in filters:
            filters = tuple(f for f in filters if f != "unassigned")
        return cls(status=status if status in STATUS_FILTERS else "open",
                   q=str(params.get("q") or "")[:200].strip(), filters=filters,
                   sort=sort if sort in SORTS else "age",
                   page=max(1, min(int(page), 10_000)) if page.isdigit() else 1)

    @classmethod
    def from_query(cls, query: str) -> QueueView:
        return cls.parse({k: v if len(v) > 1 else v[0] for k, v in parse_qs(query[:2000]).items()})

    def query(self, **changes: Any) -> str:
        """This view as a query string (only what differs from the defaults)."""
        view = replace(self, **changes)
        pairs: list[tuple[str, str]] = []
        if view.status != "open":
            pairs.append(("status", view.status))
        if view.q:
            pairs.append(("q", view.q))
        pairs += [("f", f) for f in view.filters]
        if view.sort != "age":
            pairs.append(("sort", view.sort))
        if view.page != 1:
            pairs.append(("page", str(view.page)))
        return urlencode(pairs)

    @property
    def is_default(self) -> bool:
        return self.query(page=1) == ""


def _where(query: Any, view: QueueView, me: str) -> Any:
    if view.status == "open":
        query = query.where(Case.status.in_(OPEN))
    elif view.status != "all":
        query = query.where(Case.status == view.status)
    if "mine" in view.filters:
        query = query.where(Case.assigned_to == me)
    if "unassigned" in view.filters:
        query = query.where(Case.assigned_to.is_(None))
    if "phi" in view.filters:
        # The same test as case_flags: any flag or rule hit naming PHI (JSON lists as text).
        query = query.where(or_(func.lower(cast(Case.flags, String)).like("%phi%"),
                                func.lower(cast(Case.rule_hits, String)).like("%phi%")))
    if "needs_info" in view.filters:
        query = query.where(Case.status == NEEDS_INFO)
    if "held" in view.filters:
        query = query.where(Case.status.in_(HELD))
    if view.q:
        like = like_pattern(view.q)
        # Codes live in a JSON column; its text form is searchable on SQLite and PostgreSQL.
        conditions: list[ColumnElement[bool]] = [
            func.lower(column).like(like, escape="\\")
            for column in (Requester.email, Case.subject, cast(Case.codes, String))]
        digits = view.q.upper().removeprefix("CC-")
        if digits.isdigit() and int(digits) < 2**31:
            conditions.append(Case.id == int(digits))
        query = query.where(or_(*conditions))
    return query


def ordered_ids(session: Session, settings: Settings, view: QueueView, me: str) -> list[int]:
    """The ids of the cases the view shows, in its order (at most QUEUE_LIMIT)."""
    approvable_first = case_when((Case.status.in_(APPROVABLE), 0), else_=1)
    query = _where(select(Case.id, Case.status).join(Requester, Case.requester_id == Requester.id),
                   view, me)
    sort_keys: dict[str, list[Any]] = {"age": [Case.created_at], "sla": [Case.created_at],
                       "requester": [Requester.email, Case.created_at],
                       "type": [cast(Case.question_types, String), Case.created_at]}
    keys = sort_keys[view.sort]
    rows = session.execute(query.order_by(approvable_first, *keys, Case.id)
                           .limit(QUEUE_LIMIT)).all()
    ids = [case_id for case_id, _ in rows]
    if view.sort == "sla":
        # Due times depend on the plan and on waits recorded in the audit (consultant.review.sla),
        # so this order is made here; cases off the clock (held, waiting) follow, oldest first.
        # Every case on the clock (one join, no list of thousands of ids); those not in the
        # view are simply not looked up.
        dues = {d.case_id: d for d in sla.open_dues(session, settings)}
        status: dict[int, str] = {case_id: st for case_id, st in rows}
        far = datetime.max.replace(tzinfo=UTC)
        position = {case_id: i for i, case_id in enumerate(ids)}
        ids.sort(key=lambda i: (status[i] not in APPROVABLE,
                                dues[i].due_at if i in dues else far, position[i]))
    return ids


def neighbours_in(session: Session, ids: list[int], case_id: int) -> tuple[int | None, int | None]:
    """The approvable cases before and after ``case_id`` in the order ``ids`` (the queue's)."""
    approvable = set(session.execute(select(Case.id).where(
        Case.id.in_(ids), Case.status.in_(APPROVABLE))).scalars()) if ids else set()
    order = [i for i in ids if i in approvable or i == case_id]
    if case_id not in order:
        return None, (order[0] if order else None)
    at = order.index(case_id)
    return (order[at - 1] if at > 0 else None), (order[at + 1] if at + 1 < len(order) else None)


def next_after(session: Session, settings: Settings, view: QueueView, me: str,
               case_id: int, before: list[int]) -> int | None:
    """Where the console goes after acting on a case: the next approvable case after it in the
    queue's order as it was (``before``, taken before the action), else the first one left."""
    ids = ordered_ids(session, settings, view, me)
    approvable = set(session.execute(select(Case.id).where(
        Case.id.in_(ids), Case.status.in_(APPROVABLE), Case.id != case_id)).scalars()) if ids else set()
    if case_id in before:
        for later in before[before.index(case_id) + 1:]:
            if later in approvable:
                return later
    return next((i for i in ids if i in approvable), None)


def queue(session: Session, settings: Settings, view: QueueView, me: str,
          now: datetime | None = None) -> tuple[list[QueueRow], int]:
    """One page of the view's cases with their SLA state, and the number of cases in all."""
    now = now or utcnow()
    ids = ordered_ids(session, settings, view, me)
    page_ids = ids[(view.page - 1) * PAGE_SIZE:view.page * PAGE_SIZE]
    loaded = {c.id: c for c in session.execute(
        select(Case).where(Case.id.in_(page_ids)).options(selectinload(Case.requester))
    ).scalars()} if page_ids else {}
    cases = [loaded[i] for i in page_ids]
    balances = ledger.statuses(session, settings.quota, list({c.requester_id: c.requester
                                                               for c in cases}.values()), now)
    dues = sla.dues_for(session, settings, page_ids)
    versions = dict(session.execute(select(Draft.case_id, func.max(Draft.version))
                                    .where(Draft.case_id.in_(page_ids))
                                    .group_by(Draft.case_id)).all()) if page_ids else {}
    rows = []
    for case in cases:
        due = dues.get(case.id)
        state = due.state(now) if due else None
        rows.append(QueueRow(case=case, age_hours=(now - case.created_at).total_seconds() / 3600,
                             overdue=state == sla.OVERDUE, due_soon=state == sla.DUE_SOON,
                             due=due, remaining=balances[case.requester_id].answers_remaining,
                             flags=case_flags(case), version=int(versions.get(case.id) or 0)))
    return rows, len(ids)


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
