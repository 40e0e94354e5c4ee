"""Draft latency: how long the machine took from a mail's arrival to the case's first draft.

Measured from the first mail's arrival (``InboundMail.received_at``: an intake backlog is part
of the delay) to the case's first draft (version 1), never to a later re-draft: a re-draft
follows the requester's reply to a question, and ``Case.drafted_at`` (the latest draft) would
count the time they took to answer.  A case held before its first draft (no quota left, or a
sender still to confirm) waited on the requester, not on us, for as long as the hold lasted;
such cases are left out of the sample rather than counted with someone else's delay.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consultant.models import AuditEvent, Case, Draft, InboundMail

# Holds that can come before a first draft (an info request needs a draft first).
HOLDS = ("held_quota", "held_unverified")


def draft_latencies(session: Session, sample: int) -> list[float]:
    """Seconds from arrival to first draft of the latest ``sample`` drafted cases that were
    never held before it, sorted."""
    first = (select(Draft.case_id, func.min(Draft.created_at).label("at"))
             .group_by(Draft.case_id).subquery())
    held_before = (select(AuditEvent.id).where(AuditEvent.case_id == first.c.case_id,
                                               AuditEvent.action.in_(HOLDS),
                                               AuditEvent.at <= first.c.at).exists())
    rows = session.execute(
        select(InboundMail.received_at, first.c.at)
        .join(Case, Case.id == first.c.case_id)
        .join(InboundMail, InboundMail.id == Case.first_mail_id)
        .where(~held_before)
        .order_by(first.c.case_id.desc()).limit(sample)).all()
    return sorted(max(0.0, (drafted - arrived).total_seconds()) for arrived, drafted in rows)
