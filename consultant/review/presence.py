"""Who else is working on a case: the console's "X is viewing/editing" notice.

A notice, not a lock: the lock is the draft version each form carries (actions.StaleDraft).
Each page view touches one row per case and consultant; rows older than PRESENCE_WINDOW are
ignored rather than cleaned up, so a closed tab simply ages out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.models import Draft, utcnow
from consultant.review.models import CaseViewer, ConsultantUser

PRESENCE_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Presence:
    email: str
    name: str
    seen_at: datetime
    editing: bool  # saved a draft version within the window


def touch(factory: sessionmaker[Session], case_id: int, user: ConsultantUser) -> None:
    """Record that ``user`` has the case open now."""
    for _ in range(2):  # a concurrent first view of the same pair may win the insert
        try:
            with transaction(factory) as session:
                row = session.execute(select(CaseViewer).where(
                    CaseViewer.case_id == case_id, CaseViewer.email == user.email)).scalar_one_or_none()
                if row is None:
                    session.add(CaseViewer(case_id=case_id, email=user.email, name=user.name))
                else:
                    row.seen_at = utcnow()
                    row.name = user.name
            return
        except IntegrityError:
            continue


def others(session: Session, case_id: int, me: str) -> list[Presence]:
    """The other consultants who had this case open within the window, newest first."""
    since = utcnow() - PRESENCE_WINDOW
    viewers = session.execute(select(CaseViewer).where(
        CaseViewer.case_id == case_id, CaseViewer.email != me, CaseViewer.seen_at >= since)
        .order_by(CaseViewer.seen_at.desc())).scalars().all()
    if not viewers:
        return []
    editors = set(session.execute(select(Draft.author).where(
        Draft.case_id == case_id, Draft.created_at >= since)).scalars())
    return [Presence(v.email, v.name or v.email, v.seen_at, v.email in editors) for v in viewers]
