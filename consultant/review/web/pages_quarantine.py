"""Quarantined mail in the console: the list, one mail (headers, reason, sanitised body), and
the two decisions a person takes on it (release into processing, discard with a reason)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from consultant.review import quarantine
from consultant.review.web import mailview
from consultant.review.web.app import console_of, posted
from consultant.review.web.queries import DbId

router = APIRouter()


@router.get("/quarantine")
def quarantine_page(request: Request) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    with console.factory() as session:
        return console.render(request, "quarantine.html", {
            "user": user, "mails": quarantine.quarantined(session), "active": "quarantine"})


@router.get("/quarantine/{mail_id}")
def quarantined_mail(request: Request, mail_id: DbId) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    with console.factory() as session:
        try:
            mail = quarantine.get_mail(session, mail_id)
        except quarantine.QuarantineError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        # The body only when the mail is small enough to parse safely; a mail quarantined as
        # too large shows its headers alone.
        small = mail.size <= console.settings.service.max_message_bytes
        return console.render(request, "quarantine_mail.html", {
            "user": user, "mail": mail, "headers": quarantine.header_text(mail),
            "item": mailview.inbound_item(mail) if small else None,
            "history": quarantine.history(session, mail.id), "active": "quarantine"})


@router.post("/quarantine/{mail_id}/release")
async def release(request: Request, mail_id: DbId) -> Response:
    console, _, user = await posted(request)
    try:
        result = quarantine.release(console.factory, console.settings, mail_id, by=user.email)
    except quarantine.QuarantineError as exc:
        return console.redirect(f"/quarantine/{mail_id}", str(exc), "error")
    console.dispatch(result.effects)
    if result.disposition == quarantine.QUARANTINED:
        return console.redirect(f"/quarantine/{mail_id}", "Processed again and quarantined again: "
                                f"{result.reason}", "error")
    if result.case_id is not None:
        return console.redirect(f"/cases/{result.case_id}", f"Mail {mail_id} released: "
                                f"{result.disposition} of CC-{result.case_id}.")
    return console.redirect("/quarantine", f"Mail {mail_id} released: {result.disposition}.")


@router.post("/quarantine/{mail_id}/discard")
async def discard(request: Request, mail_id: DbId) -> Response:
    console, form, user = await posted(request)
    try:
        quarantine.discard(console.factory, mail_id, reason=str(form.get("reason") or "")[:2000],
                           by=user.email)
    except quarantine.QuarantineError as exc:
        return console.redirect(f"/quarantine/{mail_id}", str(exc), "error")
    return console.redirect("/quarantine", f"Mail {mail_id} discarded; nothing will be sent.")
