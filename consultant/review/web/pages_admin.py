"""Requesters and their plans (viewing for everyone, changing plans for admins), and the
consultant's own API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consultant.quota import ledger
from consultant.review import actions, auth
from consultant.review.web import queries
from consultant.review.web.app import console_of, posted

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
    return console.redirect(back, f"{email.lower()} is now on the {plan} plan"
                            + (f"; {held} held case(s) sent back to drafting." if held else "."))


@router.get("/account")
def account_page(request: Request) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    return console.render(request, "account.html", {"user": user, "new_token": None})


@router.post("/account/token")
async def new_token(request: Request) -> Response:
    console, form, user = await posted(request)
    name = str(form.get("name") or "")[:128]
    token = auth.mint_token(console.factory, user.email, name)
    # Shown once, in this response only; the database keeps its digest.
    return console.render(request, "account.html", {"user": user, "new_token": token})
