"""Plans, allowances and the quota ledger.

A requester's allowance comes from their plan (a guest gets ``quota.guest`` answers; a
registered requester ``quota.registered`` more; other plans from ``[quota.plans]``).  Usage is
the sum of ledger rows, never a counter on the requester, so every charge and refund can be
traced to the answer that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consultant.models import AuditEvent, QuotaEntry, Requester
from consultant.settings import QuotaSettings


class UnknownPlan(ValueError):
    pass


def plan_names(quota: QuotaSettings) -> list[str]:
    return ["guest", "registered", *sorted(quota.plans)]


def allowance(quota: QuotaSettings, plan: str) -> int:
    """Total answers a plan allows (the guest answer included)."""
    if plan == "guest":
        return quota.guest
    if plan == "registered":
        return quota.guest + quota.registered
    if plan in quota.plans:
        return quota.guest + int(quota.plans[plan])
    raise UnknownPlan(f"unknown plan {plan!r} (known: {', '.join(plan_names(quota))})")


@dataclass(frozen=True)
class QuotaStatus:
    email: str
    plan: str
    answers_used: int
    answers_allowed: int

    @property
    def answers_remaining(self) -> int:
        return max(0, self.answers_allowed - self.answers_used)

    def as_json(self) -> dict[str, object]:
        return {"email": self.email, "plan": self.plan, "answers_used": self.answers_used,
                "answers_remaining": self.answers_remaining,
                "answers_allowed": self.answers_allowed}


def answers_used(session: Session, requester: Requester) -> int:
    total = session.execute(
        select(func.coalesce(func.sum(QuotaEntry.delta), 0)).where(
            QuotaEntry.requester_id == requester.id)
    ).scalar_one()
    return -int(total)


def status(session: Session, quota: QuotaSettings, requester: Requester) -> QuotaStatus:
    return QuotaStatus(requester.email, requester.plan, answers_used(session, requester),
                       allowance(quota, requester.plan))


def charge(session: Session, requester: Requester, *, case_id: int, outbox_id: int) -> None:
    session.add(QuotaEntry(requester_id=requester.id, delta=-1, reason="answer",
                           case_id=case_id, outbox_id=outbox_id))
    session.add(AuditEvent(case_id=case_id, actor="system", action="charged",
                           detail={"requester": requester.email, "outbox_id": outbox_id}))


def refund(session: Session, requester: Requester, *, case_id: int | None, outbox_id: int,
           reason: str) -> None:
    session.add(QuotaEntry(requester_id=requester.id, delta=+1, reason=reason,
                           case_id=case_id, outbox_id=outbox_id))
    session.add(AuditEvent(case_id=case_id, actor="system", action="refunded",
                           detail={"requester": requester.email, "outbox_id": outbox_id,
                                   "reason": reason}))


def get_or_create_requester(session: Session, email: str, name: str | None = None) -> Requester:
    email = email.strip().lower()
    requester = session.execute(select(Requester).where(Requester.email == email)).scalar_one_or_none()
    if requester is None:
        requester = Requester(email=email, name=name or None, plan="guest")
        session.add(requester)
        session.flush()
    return requester
