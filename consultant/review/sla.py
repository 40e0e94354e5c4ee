"""Turnaround targets (``[sla]``): when each case waiting on us is due, which are late, how many.

A case's clock starts when its first mail arrived (``InboundMail.received_at``, not when a
worker got round to opening the case: an intake backlog is our delay too).  Time the case
spent waiting on the requester is not ours: a case held for quota, held until its sender
confirmed, or whose clarifying question went out, starts a fresh clock when it came back to us,
i.e. at the first draft after its latest such wait.  Only cases in a state that waits on a
consultant (received, awaiting review, needs info) are on the clock at all.

The target is the hours of the plan that pays for the answer: an organisation member's is the
organisation's plan, everyone else's their own (as the quota ledger decides).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultant.models import (
    AWAITING_REVIEW,
    NEEDS_INFO,
    RECEIVED,
    AuditEvent,
    Case,
    InboundMail,
    Requester,
    utcnow,
)
from consultant.quota import orgs
from consultant.settings import Settings

# States in which the case waits on us, so the clock runs.
ON_THE_CLOCK = (RECEIVED, AWAITING_REVIEW, NEEDS_INFO)
# Audit actions that hand the case to the requester; the clock restarts at the next draft.
WAITS = ("held_quota", "held_unverified", "info_requested")

OVERDUE = "overdue"
DUE_SOON = "due_soon"
ON_TIME = "on_time"


@dataclass(frozen=True)
class Due:
    case_id: int
    plan: str
    hours: float
    started: datetime
    due_at: datetime
    soon_from: datetime

    def state(self, now: datetime) -> str:
        if now > self.due_at:
            return OVERDUE
        return DUE_SOON if now >= self.soon_from else ON_TIME


def clock_starts(session: Session, rows: list[tuple[int, datetime]], where: list[Any]
                 ) -> dict[int, datetime]:
    """When the clock of each ``(case id, first mail's arrival)`` started (see the module);
    ``where``: the conditions on Case that selected the rows (the audit is read by a join on
    them, not by a list of thousands of ids)."""
    starts = dict(rows)
    if not starts:
        return starts
    events = session.execute(
        select(AuditEvent.case_id, AuditEvent.action, AuditEvent.at)
        .join(Case, Case.id == AuditEvent.case_id)
        .where(*where, AuditEvent.action.in_((*WAITS, "drafted")))
        .order_by(AuditEvent.case_id, AuditEvent.at, AuditEvent.id)).all()
    waited: dict[int, bool] = {}
    for case_id, action, at in events:
        assert case_id is not None  # joined on it
        if case_id not in starts:
            continue
        if action in WAITS:
            waited[case_id] = True
        elif waited.pop(case_id, False):
            starts[case_id] = at  # back with us after a wait: a fresh clock from this draft
    return starts


def _dues(session: Session, settings: Settings, where: list[Any]) -> list[Due]:
    """Due times of the cases on the clock that match ``where`` (conditions on Case)."""
    where = [Case.status.in_(ON_THE_CLOCK), *where]
    rows = [(int(i), str(email), str(plan), arrived) for i, email, plan, arrived in session.execute(
        select(Case.id, Requester.email, Requester.plan, InboundMail.received_at)
        .join(Requester, Case.requester_id == Requester.id)
        .join(InboundMail, InboundMail.id == Case.first_mail_id)
        .where(*where)).all()]
    if not rows:
        return []
    found = orgs.orgs_for(session, list({email for _, email, _, _ in rows}))
    starts = clock_starts(session, [(case_id, arrived) for case_id, _, _, arrived in rows], where)
    sla = settings.sla
    out = []
    for case_id, email, plan, _ in rows:
        org = found.get(email.strip().lower())
        paying = org.plan if org is not None else plan
        hours = sla.hours_for(paying)
        start = starts[case_id]
        due_at = start + timedelta(hours=hours)
        out.append(Due(case_id, paying, hours, start, due_at,
                       due_at - timedelta(hours=hours * sla.due_soon_fraction)))
    return out


def dues_for(session: Session, settings: Settings, case_ids: Iterable[int]) -> dict[int, Due]:
    """The due time of each of ``case_ids`` that is on the clock (others are left out)."""
    ids = list(case_ids)
    if not ids:
        return {}
    return {d.case_id: d for d in _dues(session, settings, [Case.id.in_(ids)])}


def open_dues(session: Session, settings: Settings) -> list[Due]:
    """Every case on the clock, soonest due first."""
    dues = _dues(session, settings, [])
    return sorted(dues, key=lambda d: (d.due_at, d.case_id))


def breaches(session: Session, settings: Settings, now: datetime | None = None
             ) -> tuple[list[Due], list[Due]]:
    """(overdue, due soon), each soonest due first."""
    now = now or utcnow()
    dues = open_dues(session, settings)
    return ([d for d in dues if d.state(now) == OVERDUE],
            [d for d in dues if d.state(now) == DUE_SOON])


def overdue_count(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """Open cases past their due time (the /metrics gauge)."""
    return len(breaches(session, settings, now)[0])
