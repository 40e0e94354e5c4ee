"""Managing macros: every consultant sees their team's; team members and admins change them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consultant.review import macros
from consultant.review.web.app import console_of, posted
from consultant.review.web.queries import DbId

router = APIRouter()


@router.get("/macros")
def macros_page(request: Request) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    with console.factory() as session:
        shown = macros.all_macros(session) if user.is_admin else macros.of_team(session, user.team)
        return console.render(request, "macros.html", {
            "user": user, "macros": shown, "variables": macros.VARIABLES,
            "sample": macros.SAMPLE, "render": macros.render})


def _done(console, call, message) -> Response:  # type: ignore[no-untyped-def]
    try:
        saved = call()
    except macros.MacroError as exc:
        return console.redirect("/macros", str(exc), "error")
    return console.redirect("/macros", message(saved))


@router.post("/macros")
async def create_macro(request: Request) -> Response:
    console, form, user = await posted(request)
    # Only an admin may name another team; a consultant's macro is their own team's.
    team = str(form.get("team") or "") if user.is_admin else user.team
    return _done(console, lambda: macros.create(console.factory, user, team, str(form.get("name") or ""),
                                                str(form.get("text") or "")),
                 lambda s: f"Macro “{s.name}” saved for team {s.team or '(default)'}.")


@router.post("/macros/{macro_id}")
async def update_macro(request: Request, macro_id: DbId) -> Response:
    console, form, user = await posted(request)
    return _done(console, lambda: macros.update(console.factory, user, macro_id,
                                                str(form.get("name") or ""), str(form.get("text") or "")),
                 lambda s: f"Macro “{s.name}” updated.")


@router.post("/macros/{macro_id}/delete")
async def delete_macro(request: Request, macro_id: DbId) -> Response:
    console, _, user = await posted(request)
    return _done(console, lambda: macros.delete(console.factory, user, macro_id),
                 lambda s: f"Macro “{s.name}” deleted.")
