"""The review queue: open cases with filters, sorts and pages, against their SLA targets;
bulk assign and reject of the cases selected on it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from consultant.models import Case
from consultant.review import bulk
from consultant.review.web import queries
from consultant.review.web.app import console_of, posted

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


BULK_ACTIONS = {"assign": "Assign to me", "reject": "Reject"}


@router.post("/queue/bulk")
async def bulk_action(request: Request) -> Response:
    """Selected cases: first a confirmation page listing them, then the action case by case
    and a page saying what was done and what was skipped (and why)."""
    console, form, user = await posted(request)
    view = queries.QueueView.from_query(str(form.get("queue") or ""))
    back = "/queue" + (f"?{view.query()}" if view.query() else "")
    action = str(form.get("action") or "")
    picks = bulk.picks_of(form.getlist("case"))
    reason = str(form.get("reason") or "").strip()[:1000]
    if action not in BULK_ACTIONS:
        return console.redirect(back, "Choose Assign or Reject for the selected cases.", "error")
    if not picks:
        return console.redirect(back, "Select at least one case first.", "error")
    if action == "reject" and not reason:
        return console.redirect(back, "Give a reason to reject the selected cases (it is kept "
                                "in each case's audit trail).", "error")
    context = {"user": user, "action": action, "label": BULK_ACTIONS[action], "reason": reason,
               "queue_query": view.query(), "back": back}
    if form.get("confirm") != "1":
        with console.factory() as session:
            cases = {c.id: c for c in session.execute(
                select(Case).where(Case.id.in_([p.case_id for p in picks]))).scalars()}
            return console.render(request, "bulk.html", {
                **context, "picks": [(p, cases.get(p.case_id)) for p in picks]})
    if action == "assign":
        outcomes = bulk.assign(console.factory, picks, user.email)
    else:
        outcomes = bulk.reject(console.factory, picks, reason, user.email)
    return console.render(request, "bulk.html", {
        **context, "outcomes": outcomes, "done": sum(o.done for o in outcomes)})
