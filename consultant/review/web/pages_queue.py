"""The review queue: open cases, oldest first, against the turnaround target."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from consultant.review.web import queries
from consultant.review.web.app import console_of

router = APIRouter()


@router.get("/")
async def root(request: Request) -> Response:
    return RedirectResponse("/queue", status_code=303)


@router.get("/queue")
def queue_page(request: Request, status: str = "open", q: str = "") -> Response:
    console = console_of(request)
    user = console.require_user(request)
    if status not in queries.STATUS_FILTERS:
        status = "open"
    q = q[:200]
    with console.factory() as session:
        rows = queries.queue(session, console.settings, status=status, q=q)
        counts = queries.status_counts(session)
        return console.render(request, "queue.html", {
            "user": user, "rows": rows, "status": status, "q": q, "counts": counts,
            "filters": queries.STATUS_FILTERS, "open_total": sum(counts[s] for s in queries.OPEN),
            "turnaround": console.settings.console.turnaround_hours,
            "limit": queries.QUEUE_LIMIT})
