"""Requesters, plans and balances (viewing for everyone; plans and grants for admins), and the
consultant's own API tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consultant.outbox import bounces
from consultant.quota import admin as quota_admin
from consultant.quota.plans import plan_names
from consultant.review import auth
from consultant.review.models import ConsultantUser
from consultant.review.web import queries
from consultant.review.web.app import console_of, posted
from consultant.review.web.queries import DbId

router = APIRouter()


@router.get("/requesters")
def requesters_page(request: Request, q: str = "") -> Response:
    console = console_of(request)
    user = console.require_user(request)
    quota = console.settings.quota
    with console.factory() as session:
        rows = queries.requesters(session, console.settings, q[:200])
        return console.render(request, "requesters.html", {
            "user": user, "rows": rows, "q": q[:200], "plans": plan_names(quota),
            "packs": plan_names(quota, kinds=("topup",))})


@router.post("/requesters/clear-undeliverable")
async def clear_undeliverable(request: Request) -> Response:
    """Allow mail to an address a hard bounce marked undeliverable (any consultant: they are
    the ones who hear from the requester that the mailbox works again); audited by bounces."""
    console, form, user = await posted(request)
    email = str(form.get("email") or "").strip()
    case_id = str(form.get("case_id") or "")
    # Back to the page the button was on: a case by its number, else the requesters list.
    back = (f"/cases/{int(case_id)}" if case_id.isdigit() and int(case_id) < 2**31
            else f"/requesters?q={quote(email)}")
    if not bounces.clear_undeliverable(console.factory, email, by=user.email):
        return console.redirect(back, f"{email} is not marked undeliverable.", "error")
    return console.redirect(back, f"{email} may receive mail again (the mark was cleared; "
                            "recorded in the audit trail).")


def _quota_action(console: Any, back: str, action: Callable[[], Any], done: Callable[[Any], str]) -> Response:
    try:
        result = action()
    except quota_admin.QuotaAdminError as exc:
        return console.redirect(back, str(exc), "error")
    console.dispatch(result.effects)
    held = len(result.effects.draft_case_ids)
    return console.redirect(back, done(result) + (f"; {held} held case(s) sent back to drafting."
                                                  if held else "."))


async def _admin_form(request: Request) -> tuple[Any, Any, Any, str, str]:
    """The posted form of an admin-only quota change: console, form, user, email, back URL.

    Plans and grants decide how many answers someone gets for free: an admin decision,
    checked here on the server whatever the page showed."""
    console = console_of(request)
    form = await console.checked_form(request)
    user = console.require_admin(request)
    email = str(form.get("email") or "").strip()
    back = f"/requesters?q={quote(email)}" if email else "/requesters"
    return console, form, user, email, back


@router.post("/requesters/plan")
async def set_plan(request: Request) -> Response:
    console, form, user, email, back = await _admin_form(request)
    plan = str(form.get("plan") or "")
    if "@" not in email:
        return console.redirect(back, "An email address is required.", "error")
    return _quota_action(console, back, lambda: quota_admin.set_plan(
        console.factory, console.settings, email, plan, by=user.email),
        lambda r: f"{r.data['email']} is now on the {plan} plan")


@router.post("/requesters/grant")
async def grant(request: Request) -> Response:
    console, form, user, email, back = await _admin_form(request)
    if "@" not in email:
        return console.redirect(back, "An email address is required.", "error")
    pack = str(form.get("pack") or "") or None
    raw_answers = str(form.get("answers") or "").strip()
    if not pack and not raw_answers.isdigit():
        return console.redirect(back, "Give a number of answers or choose a top-up pack.", "error")
    answers = int(raw_answers) if raw_answers.isdigit() and not pack else None
    why = str(form.get("why") or "")[:1000]
    return _quota_action(console, back, lambda: quota_admin.grant(
        console.factory, console.settings, email, answers=answers, pack=pack, why=why,
        by=user.email),
        lambda r: f"granted {r.data['granted']['delta']} to {r.data['email']}: "
                  f"{r.data['answers_remaining']} remaining")


def _account(request: Request, user: ConsultantUser, new_token: str | None = None) -> Response:
    console = console_of(request)
    # Admins see (and may revoke) every token, consultants their own: CLI-minted ones too.
    tokens = auth.list_tokens(console.factory, None if user.is_admin else user.email)
    return console.render(request, "account.html", {"user": user, "new_token": new_token,
                                                    "tokens": tokens})


@router.get("/account")
def account_page(request: Request) -> Response:
    return _account(request, console_of(request).require_user(request))


@router.post("/account/token")
async def new_token(request: Request) -> Response:
    console, form, user = await posted(request)
    name = str(form.get("name") or "")[:128]
    token = auth.mint_token(console.factory, user.email, name)
    # Shown once, in this response only; the database keeps its digest.
    return _account(request, user, new_token=token)


@router.post("/account/token/{token_id}/revoke")
async def revoke_token(request: Request, token_id: DbId) -> Response:
    console, _, user = await posted(request)
    try:
        info = auth.revoke_token(console.factory, token_id, user)
    except auth.AuthError as exc:
        return console.redirect("/account", str(exc), "error")
    return console.redirect("/account", f"Token {info.prefix}… ({info.name or 'unnamed'}) of "
                            f"{info.owner} revoked; it no longer works.")
