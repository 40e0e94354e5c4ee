"""The SLA breach list: cases past their turnaround target, and those due soon."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from consultant.models import Case, utcnow
from consultant.review import sla
from consultant.review.web.app import console_of

router = APIRouter()
SHOWN = 200


@router.get("/sla")
def sla_page(request: Request) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    now = utcnow()
    with console.factory() as session:
        overdue, soon = sla.breaches(session, console.settings, now)
        counts = {"overdue": len(overdue), "soon": len(soon)}
        # A bad day can have thousands late: the counts are whole, the lists their most urgent.
        overdue, soon = overdue[:SHOWN], soon[:SHOWN]
        ids = [d.case_id for d in (*overdue, *soon)]
        cases = {c.id: c for c in session.execute(
            select(Case).where(Case.id.in_(ids)).options(selectinload(Case.requester))).scalars()
        } if ids else {}
        return console.render(request, "sla.html", {
            "user": user, "overdue": [(d, cases[d.case_id]) for d in overdue],
            "soon": [(d, cases[d.case_id]) for d in soon], "sla": console.settings.sla,
            "plans": sorted(console.settings.sla.plans.items()), "counts": counts,
            "shown": SHOWN})
