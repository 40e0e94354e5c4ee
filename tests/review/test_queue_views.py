"""The queue's filters, sorts and pages, and "next" following the view a consultant works."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from consultant.models import NEEDS_INFO, Case, Requester
from consultant.review.web import queries
from tests.review.conftest import CONSULTANT, backdate, csrf_of

PHI_BODY = ("Which codes for T2DM with diabetic CKD stage 3a? DOS 2026-05-01.\n"
            "Patient: John Smith, DOB 03/14/1956, MRN 00482913.")


def shown(html: str) -> list[int]:
    """The case ids of the queue's rows, in the page's order."""
    return [int(i) for i in re.findall(r'<tr class="row" data-case="(\d+)"', html)]


@pytest.fixture
def day(console):  # type: ignore[no-untyped-def]
    """Five cases as a day leaves them: one mine, one with PHI, one needing info, one held."""
    ids = {
        "mine": console.case(sender="zed@ortho.test", subject="Modifier 25 with 99214?"),
        "phi": console.case(sender="amy@endo.test", subject="ICD-10 for T2DM with CKD", body=PHI_BODY),
        "info": console.case(sender="mo@onc.test", subject="Units of J9045?"),
        "first": console.case(sender="bo@peds.test", subject="99392 with 90460?"),
    }
    # Bo's guest answer is spoken for by his first case: his second is held for quota.
    ids["held"] = console.case(sender="bo@peds.test", subject="And 90461?")
    for name, hours in zip(ids, (5, 4, 3, 2, 1), strict=True):
        backdate(console.factory, ids[name], hours)
    with console.factory() as session, session.begin():
        session.execute(update(Case).where(Case.id == ids["mine"]).values(assigned_to=CONSULTANT))
        session.execute(update(Case).where(Case.id == ids["info"]).values(status=NEEDS_INFO))
        assert session.get(Case, ids["held"]).status == "held_quota"
    return ids


def test_filters_narrow_the_queue_and_combine(console, day):
    client = console.logged_in()

    def view(**params):  # type: ignore[no-untyped-def]
        return shown(client.get("/queue", params=params).text)

    # Approvable cases first, oldest first; the held one last although it is not the oldest.
    assert view() == [day["mine"], day["phi"], day["info"], day["first"], day["held"]]
    assert view(f="mine") == [day["mine"]]
    assert view(f="unassigned") == [day["phi"], day["info"], day["first"], day["held"]]
    assert view(f="phi") == [day["phi"]]
    assert view(f="needs_info") == [day["info"]]
    assert view(f="held") == [day["held"]]
    assert view(f=["unassigned", "phi"]) == [day["phi"]]
    assert view(f=["mine", "phi"]) == []
    page = client.get("/queue", params={"f": "held"}).text
    assert 'id="filter-held" checked' in page and "No cases match" not in page


def test_sorts_by_requester_type_and_sla(console, day):
    console.settings.sla.plans = {"registered": 0.5}  # guest: the 4-hour default
    with console.factory() as session, session.begin():
        # Bo (registered, 30 min target) asked 2 h ago: 1.5 h late, before Zed's guest case
        # (5 h old against 4 h: 1 h late), Amy's (due now) and Mo's (due in an hour).
        session.execute(update(Requester).where(Requester.email == "bo@peds.test")
                        .values(plan="registered"))
    client = console.logged_in()
    by_requester = shown(client.get("/queue", params={"sort": "requester"}).text)
    assert by_requester == [day["phi"], day["first"], day["info"], day["mine"], day["held"]]
    by_sla = shown(client.get("/queue", params={"sort": "sla"}).text)
    assert by_sla == [day["first"], day["mine"], day["phi"], day["info"], day["held"]]
    assert shown(client.get("/queue").text)[0] == day["mine"]  # by age Zed's is first
    by_type = shown(client.get("/queue", params={"sort": "type"}).text)
    assert sorted(by_type[:4]) == sorted(day[n] for n in ("mine", "phi", "info", "first"))
    with console.factory() as session:
        types = {c.id: str(c.question_types) for c in session.query(Case)}
    keys = [types[i] for i in by_type[:4]]
    assert keys == sorted(keys, key=lambda t: t.replace("'", '"'))


def test_pages_of_the_queue(console, day, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 2)
    client = console.logged_in()
    first = client.get("/queue").text
    assert shown(first) == [day["mine"], day["phi"]]
    assert "page 1 of 3" in first and 'id="page-prev"' not in first
    second = client.get("/queue", params={"page": 2}).text
    assert shown(second) == [day["info"], day["first"]]
    assert 'href="/queue?page=3" id="page-next"' in second and 'href="/queue" id="page-prev"' in second
    assert shown(client.get("/queue", params={"page": 3}).text) == [day["held"]]
    # The view's choices survive paging.
    filtered = client.get("/queue", params={"f": "unassigned", "page": 2}).text
    assert shown(filtered) == [day["first"], day["held"]]
    assert 'href="/queue?f=unassigned" id="page-prev"' in filtered and 'id="page-next"' not in filtered
    assert shown(client.get("/queue", params={"page": "999"}).text) == []
    assert client.get("/queue", params={"page": "x", "sort": "nonsense"}).status_code == 200


def test_next_follows_the_chosen_view_and_approval_moves_along_it(console, day):
    client = console.logged_in()
    page = client.get(f"/cases/{day['phi']}", params={"f": "unassigned", "sort": "requester"}).text
    # Unassigned by requester: amy (phi), bo (first), mo (info); bo's held case is not approvable.
    assert f'href="/cases/{day["first"]}?f=unassigned&amp;sort=requester" id="next-case"' in page
    assert 'id="prev-case"' not in page
    assert 'name="queue" value="f=unassigned&amp;sort=requester"' in page
    middle = client.get(f"/cases/{day['first']}", params={"f": "unassigned", "sort": "requester"}).text
    assert f'href="/cases/{day["phi"]}?f=unassigned&amp;sort=requester" id="prev-case"' in middle
    assert f'href="/cases/{day["info"]}?f=unassigned&amp;sort=requester" id="next-case"' in middle
    response = client.post(f"/cases/{day['first']}/approve", data={
        "csrf_token": csrf_of(middle), "text": "Yes: 99392 with 90460.", "version": "1",
        "queue": "f=unassigned&sort=requester"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/cases/{day['info']}?f=unassigned&sort=requester"
    # A forged queue value is re-checked: unknown values fall back to the defaults.
    forged = client.post(f"/cases/{day['info']}/save", data={
        "csrf_token": csrf_of(middle), "text": "draft", "queue": "sort=//evil.test&f=x"},
        follow_redirects=False)
    assert forged.headers["location"] == f"/cases/{day['info']}"


def test_a_data_decided_case_still_approves_with_ctrl_enter_markup(console, day):
    # The editor and its Approve button (Ctrl+Enter) sit in one form at the top of the draft card.
    page = console.logged_in().get(f"/cases/{day['phi']}").text
    form = page[page.index('id="draft-form"'):page.index("</form>", page.index('id="draft-form"'))]
    assert 'id="approve"' in form and 'id="draft-text"' in form
    assert form.index('id="approve"') < form.index('id="draft-text"')
