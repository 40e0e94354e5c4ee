"""Requesters and their plans (viewing for everyone, changing plans for admins), and the
consultant's own API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consultant.quota import ledger
from consultant.review import actions, auth
from consultant.review.models import ConsultantUser
from consultant.review.web import queries
from consultant.review.web.app import console_of, posted
from consultant.review.web.queries import DbId

router = APIRouter()


@router.get("/requesters")
def requesters_page(request: Request, q: str = "") -> Response:
    console = console_of(request)
    user = console.require_user(request)
    with console.factory() as session:
        rows = queries.requesters(session, console.settings, q[:200])
        return console.render(request, "requesters.html", {
            "user": user, "rows": rows, "q": q[:200],
            "plans": ledger.plan_names(console.settings.quota)})


@router.post("/requesters/plan")
async def set_plan(request: Request) -> Response:
    console = console_of(request)
    form = await console.checked_form(request)
    # Plans decide how many answers someone gets for free: an admin decision, checked here on
    # the server whatever the page showed.
    user = console.require_admin(request)
    email = str(form.get("email") or "").strip()
    plan = str(form.get("plan") or "")
    back = f"/requesters?q={email}" if email else "/requesters"
    if "@" not in email:
        return console.redirect(back, "An email address is required.", "error")
    try:
        effects = actions.set_plan(console.factory, console.settings, email, plan, by=user.email)
    except ledger.UnknownPlan as exc:
        return console.redirect(back, str(exc), "error")
    console.dispatch(effects)
    held = len(effects.draft_case_ids)
    sent_back = f"; {held} held {'case' if held == 1 else 'cases'} sent back to drafting"
    return console.redirect(back, f"{email.lower()} is now on the {plan} plan"
                            + (sent_back if held else "") + ".")


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
