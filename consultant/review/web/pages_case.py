"""One case: its thread, what the machine found and why, the draft editor and the actions.

Every action goes through consultant.review.actions (the same functions as the CLI), which
records the AuditEvent with the consultant's email; work to do after commit (sending) is
dispatched only once the action's transaction has committed.  Every form carries the draft
version it was made from, so a save or approval from a page that another consultant has
overtaken is refused with their name and a diff (actions.StaleDraft), never applied silently.
"""

from __future__ import annotations

import difflib
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from consultant.drafting import notes
from consultant.mail.rules import CHAIN
from consultant.models import Case
from consultant.privacy.redact import Summary
from consultant.review import actions, macros, presence, sla
from consultant.review.models import CaseNote, ConsultantUser
from consultant.review.web import mailview, queries
from consultant.review.web.app import Console, console_of, posted
from consultant.review.web.queries import CaseId
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


def _load(session: Session, case_id: int) -> Case:
    case = session.execute(
        select(Case).where(Case.id == case_id).options(
            selectinload(Case.mails), selectinload(Case.drafts), selectinload(Case.outbox),
            selectinload(Case.requester))
    ).scalar_one_or_none()
    if case is None:
        raise HTTPException(status_code=404, detail=f"case {case_id} does not exist")
    return case


def diff_lines(theirs: str, yours: str, their_label: str) -> list[tuple[str, str]]:
    """(kind, line) pairs of a unified diff from ``theirs`` to ``yours``: kind is "add",
    "del", "hunk" or "same", for the stale-save notice."""
    out = []
    for line in difflib.unified_diff(theirs.splitlines(), yours.splitlines(), their_label,
                                     "your text", lineterm="", n=2):
        kind = ("hunk" if line.startswith(("@@", "---", "+++")) else "add" if line.startswith("+")
                else "del" if line.startswith("-") else "same")
        out.append((kind, line))
    return out


def _filled(text: str, variables: dict[str, object]) -> str:
    try:
        return macros.render(text, variables)
    except macros.MacroError as exc:  # saved before a change to the variables: say so, in place
        return f"[Consultant: this macro could not be filled in: {exc}]"


def render_case(console: Console, request: Request, user: ConsultantUser, case_id: int,
                view: queries.QueueView, *, editor_text: str | None = None,
                stale: actions.StaleDraft | None = None, status_code: int = 200) -> Response:
    """The case page; ``editor_text`` and ``stale`` re-show a refused edit beside the diff.
    ``view``: the queue the consultant came from (its previous/next links follow it)."""
    with console.factory() as session:
        case = _load(session, case_id)
        order = queries.ordered_ids(session, console.settings, view, user.email)
        data = case_json(session, console.settings, case)
        codes = [str(c["code"]) for c in data["codes"] if c.get("code")]
        draft = data["draft"]
        fill = macros.variables_for(case, user, plan=str(data["plan"]),
                                    answers_left=int(data["answers_remaining"]), codes=codes)
        return console.render(request, "case.html", {
            "user": user, "case": case, "data": data, "thread": mailview.thread(case),
            "flags": queries.case_flags(case), "audit": queries.audit_for(session, case.id),
            "describe_rule": describe_rule, "editable": case.status in actions.APPROVABLE,
            "editor_text": editor_text if editor_text is not None else (draft["text"] if draft else ""),
            "version": draft["version"] if draft else 0,
            "stale": stale, "stale_diff": diff_lines(stale.text, editor_text or "",
                                                     f"{stale.author}, version {stale.version}")
            if stale else [],
            "neighbours": queries.neighbours_in(session, order, case.id),
            "view": view, "queue_query": view.query(), "sorts": queries.SORTS,
            "due": sla.dues_for(session, console.settings, [case.id]).get(case.id),
            "macros": [(m, _filled(m.text, fill)) for m in macros.of_team(session, user.team)],
            "viewers": presence.others(session, case.id, user.email),
            "notes": notes.notes_for(session, codes, internal=True)[:20] if codes else [],
            "note_subject": "+".join(codes[:2]),
            "case_notes": session.execute(select(CaseNote).where(CaseNote.case_id == case.id)
                                          .order_by(CaseNote.id)).scalars().all(),
            "drafts": list(reversed(case.drafts)),
            "removed": Summary.from_json(case.redaction)}, status_code=status_code)


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: CaseId) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    with console.factory() as session:
        _load(session, case_id)  # 404 before recording a view of a case that does not exist
    presence.touch(console.factory, case_id, user)
    return render_case(console, request, user, case_id, queries.QueueView.parse(request.query_params))


def _text(form: Any, name: str = "text") -> str:
    text = str(form.get(name) or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT:
        raise HTTPException(status_code=413, detail=f"text longer than {MAX_TEXT} characters")
    return text


def _version(form: Any) -> int | None:
    """The draft version the form was made from (absent: an old page or a script; unchecked)."""
    value = str(form.get("version") or "").strip()
    return int(value) if value.isdigit() else None


def _view(form: Any) -> queries.QueueView:
    """The queue the form's page was opened from (a hidden field, re-checked value by value)."""
    return queries.QueueView.from_query(str(form.get("queue") or ""))


def case_url(case_id: int, view: queries.QueueView) -> str:
    query = view.query()
    return f"/cases/{case_id}" + (f"?{query}" if query else "")


def _run(console: Console, case_id: int, form: Any, done: str, call: Any) -> Response:
    """Run an action; on ActionError come back to the case with the reason shown."""
    back = case_url(case_id, _view(form))
    try:
        call()
    except actions.ActionError as exc:
        return console.redirect(back, str(exc), "error")
    return console.redirect(back, done)


def _refused(console: Console, request: Request, user: ConsultantUser, case_id: int,
             form: Any, exc: actions.ActionError, text: str) -> Response:
    """An edit that cannot be applied: a stale one is shown again with the diff (409) so the
    consultant's text is not lost; anything else comes back as the flashed reason."""
    if isinstance(exc, actions.StaleDraft):
        return render_case(console, request, user, case_id, _view(form), editor_text=text,
                           stale=exc, status_code=409)
    return console.redirect(case_url(case_id, _view(form)), str(exc), "error")


@router.post("/cases/{case_id}/save")
async def save(request: Request, case_id: CaseId) -> Response:
    console, form, user = await posted(request)
    text = _text(form)
    try:
        actions.edit_draft(console.factory, case_id, text, by=user.email,
                           expected_version=_version(form))
    except actions.ActionError as exc:
        return _refused(console, request, user, case_id, form, exc, text)
    return console.redirect(case_url(case_id, _view(form)), "Draft saved.")


@router.post("/cases/{case_id}/approve")
async def approve(request: Request, case_id: CaseId) -> Response:
    console, form, user = await posted(request)
    text = _text(form)
    view = _view(form)
    if not text.strip():
        return console.redirect(case_url(case_id, view), "Refusing to send an empty answer.", "error")
    with console.factory() as session:
        before = queries.ordered_ids(session, console.settings, view, user.email)
    try:
        # "Approve and send" always sends an answer, even when the machine drafted a question
        # (the consultant replaced it); questions go out through "Request info".
        effects = actions.approve(console.factory, console.settings, case_id, text=text,
                                  by=user.email, kind="answer", expected_version=_version(form),
                                  confirm_phi=bool(form.get("confirm_phi")))
    except actions.ActionError as exc:
        return _refused(console, request, user, case_id, form, exc, text)
    # Only now, after the approval committed, may the send be enqueued.
    console.dispatch(effects)
    with console.factory() as session:
        nxt = queries.next_after(session, console.settings, view, user.email, case_id, before)
    message = f"Case {case_id} approved; the answer is queued for sending."
    query = view.query()
    return console.redirect(case_url(nxt, view) if nxt else "/queue" + (f"?{query}" if query else ""),
                            message)


@router.post("/cases/{case_id}/request-info")
async def request_info(request: Request, case_id: CaseId) -> Response:
    console, form, user = await posted(request)
    text = _text(form)
    try:
        effects = actions.request_info(console.factory, console.settings, case_id, text=text,
                                       by=user.email, expected_version=_version(form),
                                       confirm_phi=bool(form.get("confirm_phi")))
    except actions.ActionError as exc:
        return _refused(console, request, user, case_id, form, exc, text)
    console.dispatch(effects)
    return console.redirect(case_url(case_id, _view(form)), "Question sent to the requester; the case "
                            "waits for their reply (no quota charged).")


@router.post("/cases/{case_id}/reject")
async def reject(request: Request, case_id: CaseId) -> Response:
    console, form, user = await posted(request)
    reason = _text(form, "reason")
    return _run(console, case_id, form, "Case rejected; nothing will be sent.",
                lambda: actions.reject(console.factory, case_id, reason=reason, by=user.email))


@router.post("/cases/{case_id}/assign")
async def assign(request: Request, case_id: CaseId) -> Response:
    console, form, user = await posted(request)
    to = None if form.get("release") else user.email
    try:
        actions.assign(console.factory, case_id, to=to, by=user.email,
                       takeover=form.get("takeover") == "1")
    except actions.TakeoverNeeded as exc:
        # Someone else holds the case: ask first (server-rendered, so no script is needed).
        return console.render(request, "confirm.html", {
            "user": user, "case_id": case_id, "holder": exc.holder, "release": to is None,
            "csrf": console.csrf_for(request), "queue_query": _view(form).query()},
            status_code=409)
    except actions.ActionError as exc:
        return console.redirect(case_url(case_id, _view(form)), str(exc), "error")
    return console.redirect(case_url(case_id, _view(form)), "Assigned to you." if to else "Released.")


@router.post("/cases/{case_id}/note")
async def add_note(request: Request, case_id: CaseId) -> Response:
    console, form, user = await posted(request)
    text, subject = _text(form), _text(form, "subject")
    public = form.get("customer_facing") == "1"
    where = "in later answers" if public else "to consultants only"
    return _run(console, case_id, form, f"Knowledge note on {subject.strip()} saved (shown {where}).",
                lambda: actions.add_note(console.factory, case_id, subject, text, by=user.email,
                                         customer_facing=public))


@router.post("/cases/{case_id}/internal-note")
async def add_case_note(request: Request, case_id: CaseId) -> Response:
    console, form, user = await posted(request)
    text = _text(form)
    return _run(console, case_id, form, "Internal note saved (never sent to the requester).",
                lambda: actions.add_case_note(console.factory, case_id, text, by=user.email))
