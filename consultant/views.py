"""JSON shapes of cases, mails and requesters (the CLI's --json and the REST API share them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from consultant.models import Case, InboundMail, Outbox
from consultant.quota import ledger
from consultant.settings import Settings


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def case_json(session: Session, settings: Settings, case: Case) -> dict[str, Any]:
    draft = case.drafts[-1] if case.drafts else None
    message_ids = [m.message_id for m in case.mails if m.message_id]
    answers = [o for o in case.outbox if o.kind in ("answer", "needs_info")]
    quota = ledger.status(session, settings.quota, case.requester)
    return {
        "id": case.id,
        "status": case.status,
        "requester": case.requester.email,
        "plan": case.requester.plan,
        "answers_remaining": quota.answers_remaining,
        "subject": case.subject,
        "message_ids": message_ids,
        "codes": [{"system": c.get("system"), "code": c.get("code"),
                   "description": c.get("description"), **{k: v for k, v in c.items()
                                                           if k not in ("system", "code", "description")}}
                  for c in case.codes or []],
        "findings": list(case.findings or []),
        "question_types": list(case.question_types or []),
        "flags": list(case.flags or []),
        # What redaction removed (kinds and counts, never values); approving needs confirm_phi.
        "redaction": dict(case.redaction or {}),
        "rule_hits": sorted({h for m in case.mails for h in (m.rule_hits or [])} | set(case.rule_hits or [])),
        "draft": ({"text": draft.text, "template": draft.template, "version": draft.version,
                   "author": draft.author, "kind": draft.kind} if draft else None),
        "answers": [{"message_id": o.message_id, "sent_at": _iso(o.sent_at), "status": o.status,
                     "kind": o.kind} for o in answers],
        "notices": [{"message_id": o.message_id, "sent_at": _iso(o.sent_at), "status": o.status,
                     "kind": o.kind} for o in case.outbox if o.kind not in ("answer", "needs_info")],
        "assigned_to": case.assigned_to,
        "reject_reason": case.reject_reason,
        "failure": case.failure,
        "created_at": _iso(case.created_at),
        "updated_at": _iso(case.updated_at),
    }


def mail_json(mail: InboundMail) -> dict[str, Any]:
    return {
        "id": mail.id,
        "message_id": mail.message_id,
        "from": mail.from_addr,
        "subject": mail.subject,
        "disposition": mail.disposition,
        "reason": mail.disposition_reason,
        "case_id": mail.case_id,
        "rule_hits": list(mail.rule_hits or []),
        "source": mail.source,
        "size": mail.size,
        "received_at": _iso(mail.received_at),
    }


def outbox_json(out: Outbox) -> dict[str, Any]:
    return {"id": out.id, "case_id": out.case_id, "kind": out.kind, "message_id": out.message_id,
            "to": out.to_addr, "subject": out.subject, "status": out.status,
            "attempts": out.attempts, "last_error": out.last_error, "sent_at": _iso(out.sent_at)}
