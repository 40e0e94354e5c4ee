"""Automatic notices (over quota, registration confirmed): rendered, built and queued in one go.

They are replies in the requester's thread marked ``Auto-Submitted: auto-replied`` (RFC 3834),
charge nothing, and are skipped when the requester's address cannot be used as a recipient.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from consultant.drafting.templating import render_pair
from consultant.models import Case, Outbox
from consultant.outbox.compose import BadAddress, build_message, new_message_id, reply_subject
from consultant.settings import Settings


def queue_notice(session: Session, settings: Settings, case: Case, *, template: str,
                 context: dict[str, Any], kind: str, in_reply_to: str | None) -> int | None:
    """Add the notice to the outbox; its id, or None when the address is unusable."""
    text, html = render_pair(template, context, settings.service.template_dir)
    message_id = new_message_id(settings)
    subject = reply_subject(case.subject, case.id)
    to_addr = case.requester.email
    try:
        raw = build_message(settings, to_addr=to_addr, subject=subject, text=text, html=html,
                            message_id=message_id, in_reply_to=in_reply_to, references=[],
                            auto_submitted="auto-replied")
    except BadAddress:
        return None
    out = Outbox(case_id=case.id, kind=kind, message_id=message_id, to_addr=to_addr,
                 subject=subject, raw=raw, charges_quota=False)
    session.add(out)
    session.flush()
    return out.id
