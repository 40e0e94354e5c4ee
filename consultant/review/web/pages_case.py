"""One case: its thread, what the machine found and why, the draft editor and the actions.

Every action goes through consultant.review.actions (the same functions as the CLI), which
records the AuditEvent with the consultant's email; work to do after commit (sending) is
dispatched only once the action's transaction has committed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from consultant.drafting import notes
from consultant.mail.rules import CHAIN
from consultant.models import AWAITING_REVIEW, NEEDS_INFO, Case
from consultant.privacy.redact import Summary
from consultant.review import actions
from consultant.review.web import mailview, queries
from consultant.review.web.app import Console, console_of, posted
from consultant.senders import hold as sender_rules
from consultant.views import case_json

router = APIRouter()
MAX_TEXT = 100_000

RULE_DESCRIPTIONS = {rule.name: rule.description for rule, _ in CHAIN} | {
    "new_case": "a person's mail that does not continue an existing case",
    "is_followup_by_references": "continues a case (In-Reply-To/References name one of its mails)",
    "is_followup_by_subject_tag": "continues a case (its [CC-n] subject tag, same requester)",
    "over_quota": "the requester has no answers left on their plan",
    "is_duplicate": "a second delivery of a Message-ID already received",
    "is_from_self": "sent from the service's own address",
    **sender_rules.DESCRIPTIONS,
}


def describe_rule(hit: str) -> str:
    """A sentence for a recorded rule hit (drafting records ``family:name`` hits)."""
    if hit in RULE_DESCRIPTIONS:
        return RULE_DESCRIPTIONS[hit]
    if hit == "phi_suspected":
        return "the mail seems to contain patient identifiers (the reply redacts them)"
    if hit.startswith("phi_"):
        return f"possible patient identifier: {hit[4:].replace('_', ' ')}"
    family, _, name = hit.partition(":")
    name = name.replace("_", " ")
    return {"needs_info": f"the draft asks the requester for: {name}",
            "question_rule": f"question type chosen by the rule: {name}",
            "phi": f"possible patient identifier in the mail: {name}"}.get(family, "")


def _load(console: Console, session: Any, case_id: int) -> Case:
    case = session.execute(
        select(Case).where(Case.id == case_id).options(
            selectinload(Case.mails), selectinload(Case.drafts), selectinload(Case.outbox),
            selectinload(Case.requester))
    ).scalar_one_or_none()
    if case is None:
        raise HTTPException(status_code=404, detail=f"case {case_id} does not exist")
    return case


def _next_case_id(session: Any, after: Case | None) -> int | None:
    query = select(Case.id).where(Case.status == AWAITING_REVIEW).order_by(Case.created_at, Case.id)
    if after is not None:
        query = query.where(Case.id != after.id)
    return session.execute(query.limit(1)).scalar()


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: int) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    with console.factory() as session:
        case = _load(console, session, case_id)
        data = case_json(session, console.settings, case)
        codes = [str(c["code"]) for c in data["codes"] if c.get("code")]
        related_notes = notes.notes_for(session, codes) if codes else []
        return console.render(request, "case.html", {
            "user": user, "case": case, "data": data, "thread": mailview.thread(case),
            "flags": queries.case_flags(case), "audit": queries.audit_for(session, case.id),
            "describe_rule": describe_rule,
            "editable": case.status in (AWAITING_REVIEW, NEEDS_INFO),
            "next_case": _next_case_id(session, case), "notes_enabled": True,
            "notes": related_notes[:20], "note_subject": "+".join(codes[:2]),
            "drafts": list(reversed(case.drafts)),
            "removed": Summary.from_json(case.redaction)})


def _text(form: Any, name: str = "text") -> str:
    text = str(form.get(name) or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT:
        raise HTTPException(status_code=413, detail=f"text longer than {MAX_TEXT} characters")
    return text


def _run(console: Console, case_id: int, done: str, call: Any) -> Response:
    """Run an action; on ActionError come back to the case with the reason shown."""
    try:
        call()
    except actions.ActionError as exc:
        return console.redirect(f"/cases/{case_id}", str(exc), "error")
    return console.redirect(f"/cases/{case_id}", done)


@router.post("/cases/{case_id}/save")
async def save(request: Request, case_id: int) -> Response:
    console, form, user = await posted(request)
    text = _text(form)
    return _run(console, case_id, "Draft saved.",
                lambda: actions.edit_draft(console.factory, case_id, text, by=user.email))


@router.post("/cases/{case_id}/approve")
async def approve(request: Request, case_id: int) -> Response:
    console, form, user = await posted(request)
    text = _text(form)
    if not text.strip():
        return console.redirect(f"/cases/{case_id}", "Refusing to send an empty answer.", "error")
    try:
        # "Approve and send" always sends an answer, even when the machine drafted a question
        # (the consultant replaced it); questions go out through "Request info".
        effects = actions.approve(console.factory, console.settings, case_id, text=text,
                                  by=user.email, kind="answer",
                                  confirm_phi=bool(form.get("confirm_phi")))
    except actions.ActionError as exc:
        return console.redirect(f"/cases/{case_id}", str(exc), "error")
    # Only now, after the approval committed, may the send be enqueued.
    console.dispatch(effects)
    with console.factory() as session:
        nxt = _next_case_id(session, None)
    message = f"Case {case_id} approved; the answer is queued for sending."
    return console.redirect(f"/cases/{nxt}" if nxt else "/queue", message)


@router.post("/cases/{case_id}/request-info")
async def request_info(request: Request, case_id: int) -> Response:
    console, form, user = await posted(request)
    text = _text(form)
    try:
        effects = actions.request_info(console.factory, console.settings, case_id, text=text,
                                       by=user.email, confirm_phi=bool(form.get("confirm_phi")))
    except actions.ActionError as exc:
        return console.redirect(f"/cases/{case_id}", str(exc), "error")
    console.dispatch(effects)
    return console.redirect(f"/cases/{case_id}", "Question sent to the requester; the case "
                            "waits for their reply (no quota charged).")


@router.post("/cases/{case_id}/reject")
async def reject(request: Request, case_id: int) -> Response:
    console, form, user = await posted(request)
    reason = _text(form, "reason")
    return _run(console, case_id, "Case rejected; nothing will be sent.",
                lambda: actions.reject(console.factory, case_id, reason=reason, by=user.email))


@router.post("/cases/{case_id}/assign")
async def assign(request: Request, case_id: int) -> Response:
    console, form, user = await posted(request)
    to = None if form.get("release") else user.email
    return _run(console, case_id, "Assigned to you." if to else "Released.",
                lambda: actions.assign(console.factory, case_id, to=to, by=user.email))


@router.post("/cases/{case_id}/note")
async def add_note(request: Request, case_id: int) -> Response:
    console, form, user = await posted(request)
    text, subject = _text(form), _text(form, "subject")
    return _run(console, case_id, f"Knowledge note on {subject.strip()} saved.",
                lambda: actions.add_note(console.factory, case_id, subject, text, by=user.email))
