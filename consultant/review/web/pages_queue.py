"""The review queue: open cases with filters, sorts and pages, against their SLA targets."""

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
def queue_page(request: Request) -> Response:
    console = console_of(request)
    user = console.require_user(request)
    view = queries.QueueView.parse(request.query_params)
    with console.factory() as session:
        rows, total = queries.queue(session, console.settings, view, user.email)
        counts = queries.status_counts(session)
        pages = max(1, -(-total // queries.PAGE_SIZE))
        return console.render(request, "queue.html", {
            "user": user, "rows": rows, "view": view, "total": total, "pages": pages,
            "counts": counts, "statuses": queries.STATUS_FILTERS, "filters": queries.FILTERS,
            "sorts": queries.SORTS, "open_total": sum(counts[s] for s in queries.OPEN),
            "limit": queries.QUEUE_LIMIT, "page_size": queries.PAGE_SIZE})
