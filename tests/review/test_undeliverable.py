"""A hard bounce's undeliverable mark, shown on the requesters page and the case page, and
cleared by a consultant (audited)."""

from __future__ import annotations

import html

from sqlalchemy import select

from consultant.models import AuditEvent, Case, Requester
from consultant.outbox import bounces
from tests.outbox.test_loops_and_bounces import _answered_case, _dsn
from tests.review.conftest import CONSULTANT, csrf_of
from tests.test_processing import ingest


def test_the_mark_is_shown_and_a_consultant_clears_it_from_the_case_page(console):
    case_id, sent = _answered_case(console.factory, console.settings)
    ingest(console.factory, console.settings, _dsn(sent, "coder@clinic.test"))
    client = console.logged_in()
    listing = client.get("/requesters", params={"q": "coder@"}).text
    assert "undeliverable" in listing and "5.1.1" in listing and "Clear the mark" in listing
    page = client.get(f"/cases/{case_id}").text
    notice = page[page.index('class="notice small undeliverable"'):]
    assert "Nothing is sent to this address until the mark is cleared" in notice
    assert f'name="case_id" value="{case_id}"' in notice
    # Without the CSRF token nothing happens.
    assert client.post("/requesters/clear-undeliverable",
                       data={"email": "coder@clinic.test"}).status_code == 403
    cleared = client.post("/requesters/clear-undeliverable", follow_redirects=False, data={
        "csrf_token": csrf_of(page), "email": "coder@clinic.test", "case_id": str(case_id)})
    assert cleared.headers["location"] == f"/cases/{case_id}"
    after = client.get(f"/cases/{case_id}").text
    assert "coder@clinic.test may receive mail again" in html.unescape(after)
    assert 'class="notice small undeliverable"' not in after
    with console.factory() as session:
        requester = session.execute(select(Requester).where(
            Requester.email == "coder@clinic.test")).scalar_one()
        assert requester.undeliverable_at is None
        assert bounces.UNDELIVERABLE_FLAG not in session.get(Case, case_id).flags
        [event] = session.execute(select(AuditEvent).where(
            AuditEvent.action == "undeliverable_cleared")).scalars()
        assert event.actor == CONSULTANT and event.detail["address"] == "coder@clinic.test"
    again = client.post("/requesters/clear-undeliverable", data={
        "csrf_token": csrf_of(after), "email": "coder@clinic.test"})
    assert "coder@clinic.test is not marked undeliverable." in html.unescape(again.text)
    assert "Clear the mark" not in client.get("/requesters").text
