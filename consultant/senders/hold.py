"""The sender rules of the classification: hold mail whose sender is not verified, and release
it when the address confirms by replying to our notice.

Two named rules are recorded on the mail (and shown to the consultant):

* ``is_unverified_sender`` — :func:`consultant.senders.authenticity.check` found no evidence
  that the From address sent it.  Policy ``warn`` records the hit and flags the case; policy
  ``hold`` puts the case in ``unverified``: no draft, no charge, and one notice to the address.
* ``confirms_sender`` — a reply whose In-Reply-To/References name that notice, from the same
  address.  Only someone who reads that mailbox has the notice's Message-ID (the subject tag is
  guessable, so it does not count), which is exactly the proof a forged From lacks; the reply
  itself need not pass the checks (many domains sign nothing).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultant.mail.parse import MailView
from consultant.models import UNVERIFIED, AuditEvent, Case, InboundMail, Outbox
from consultant.outbox.notices import queue_notice
from consultant.senders.authenticity import Verdict
from consultant.settings import Settings

UNVERIFIED_RULE = "is_unverified_sender"
CONFIRMS_RULE = "confirms_sender"
NOTICE_KIND = "verify_notice"
FLAG = "unverified_sender"
DESCRIPTIONS = {
    UNVERIFIED_RULE: "the sender could not be verified (Authentication-Results from our MTA, or "
                     "DKIM); held until the address confirms",
    CONFIRMS_RULE: "a reply to our confirmation notice from the same address: the sender is "
                   "confirmed",
}


def confirms(session: Session, case: Case, view: MailView) -> bool:
    """Does this mail answer the case's confirmation notice, from the case's own address?"""
    if case.status != UNVERIFIED or view.from_addr != case.requester.email:
        return False
    ids = [*view.in_reply_to, *view.references][:50]
    if not ids:
        return False
    return session.execute(select(Outbox.id).where(
        Outbox.case_id == case.id, Outbox.kind == NOTICE_KIND,
        Outbox.message_id.in_(ids))).first() is not None


def confirm(session: Session, case: Case, mail: InboundMail) -> None:
    """Record the confirmation; the caller drafts the case again."""
    mail.rule_hits = [*(mail.rule_hits or []), CONFIRMS_RULE]
    case.flags = [f for f in case.flags if f != FLAG]
    session.add(AuditEvent(case_id=case.id, actor=case.requester.email, action="sender_confirmed",
                           detail={"mail_id": mail.id}))


def screen(settings: Settings, mail: InboundMail, case: Case, verdict: Verdict | None) -> bool:
    """Apply the policy to a person's mail on ``case``; True when the case must be held.

    ``warn`` records the rule hit and flags the case, and lets it go on."""
    if verdict is None or verdict.verified:
        return False
    mail.rule_hits = [*(mail.rule_hits or []), UNVERIFIED_RULE]
    mail.disposition_reason = f"sender not verified: {verdict.detail}"
    if FLAG not in case.flags:
        case.flags = [*case.flags, FLAG]
    return settings.authenticity.policy == "hold"


def hold(session: Session, settings: Settings, case: Case, mail: InboundMail,
         verdict: Verdict) -> int | None:
    """Hold the case as unverified and queue its one notice; the notice's outbox id (None when
    the case has had its notice already, or the address cannot be written to)."""
    case.status = UNVERIFIED
    mail.disposition = "held_unverified"
    session.add(AuditEvent(case_id=case.id, actor="system", action="held_unverified",
                           detail={"mail_id": mail.id, **verdict.as_json()}))
    session.flush()
    # One notice per case: a forger sending many mails must not make us mail the victim often.
    if session.execute(select(Outbox.id).where(Outbox.case_id == case.id,
                                               Outbox.kind == NOTICE_KIND)).first():
        return None
    context = {"subject": mail.subject or case.subject, "service_name": settings.service.name,
               "service_address": settings.service.address, "email": case.requester.email}
    return queue_notice(session, settings, case, template="verify_sender", context=context,
                        kind=NOTICE_KIND, in_reply_to=mail.message_id)
