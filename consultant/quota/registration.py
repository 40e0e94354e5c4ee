"""Free registration by mail: a guest answers the over-quota notice with REGISTER in the subject.

Only a reply that threads into the requester's own held case counts (In-Reply-To/References or
the case tag from the same address), so a stranger cannot register somebody else, and only a
guest is upgraded (a paid plan is never downgraded by this).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultant.models import HELD_QUOTA, AuditEvent, Case, InboundMail
from consultant.outbox.notices import queue_notice
from consultant.quota import charging, ledger
from consultant.settings import Settings

_REGISTER = re.compile(r"\bREGISTER\b", re.IGNORECASE)


def is_registration_request(subject: str, case: Case) -> bool:
    return case.status == HELD_QUOTA and case.requester.plan == "guest" and \
        bool(_REGISTER.search(subject or ""))


def register(session: Session, settings: Settings, case: Case, mail: InboundMail) -> tuple[list[int], int | None]:
    """Upgrade the requester; return (other held case ids to draft, confirmation outbox id)."""
    requester = case.requester
    charging.change_plan(session, settings.quota, ledger.requester_account(requester),
                         "registered", by=requester.email)
    session.add(AuditEvent(case_id=case.id, actor=requester.email, action="registered",
                           detail={"mail_id": mail.id}))
    session.flush()
    held = list(session.execute(
        select(Case.id).where(Case.requester_id == requester.id, Case.status == HELD_QUOTA,
                              Case.id != case.id).order_by(Case.id)).scalars())
    status = ledger.status(session, settings.quota, requester)
    context = {"requester_name": requester.name or "", "service_name": settings.service.name,
               "email": requester.email, "plan": status.plan,
               "answers_allowed": status.answers_allowed,
               "answers_remaining": status.answers_remaining, "held_cases": len(held) + 1,
               "service_address": settings.service.address}
    return held, queue_notice(session, settings, case, template="registration", context=context,
                              kind="notice", in_reply_to=mail.message_id)
