"""Bulk assign and reject from the queue: confirmation, CSRF, one audit event per case, and a
case changed since the queue page was made skipped and named, never overwritten."""

from __future__ import annotations

import re

from sqlalchemy import select

from consultant.models import AuditEvent, Case
from consultant.review import actions
from tests.review.conftest import ADMIN, CONSULTANT, csrf_of


def checkbox_values(html: str) -> dict[int, str]:
    return {int(v.split(":")[0]): v for v in re.findall(r'name="case" value="([^"]+)"', html)}


def bulk(client, page: str, action: str, cases: list[str], **extra: str):  # type: ignore[no-untyped-def]
    return client.post("/queue/bulk", data={"csrf_token": csrf_of(page), "action": action,
                                            "case": cases, **extra}, follow_redirects=False)


def test_bulk_assign_asks_first_then_assigns_each_case_with_its_own_audit_event(console):
    ids = [console.case(sender=f"c{i}@clinic.test", subject=f"Question {i}") for i in range(3)]
    client = console.logged_in()
    page = client.get("/queue").text
    values = checkbox_values(page)
    asked = bulk(client, page, "assign", [values[i] for i in ids], queue="sort=requester")
    assert asked.status_code == 200 and 'id="bulk-confirm"' in asked.text
    assert "Assign to me: 3 cases?" in asked.text
    with console.factory() as session:
        assert all(session.get(Case, i).assigned_to is None for i in ids)  # nothing yet
    done = bulk(client, asked.text, "assign", re.findall(r'name="case" value="([^"]+)"', asked.text),
                confirm="1", queue="sort=requester")
    assert "Assign to me: 3 of 3 done" in done.text
    assert 'href="/queue?sort=requester" id="bulk-back"' in done.text
    with console.factory() as session:
        assert [session.get(Case, i).assigned_to for i in ids] == [CONSULTANT] * 3
        events = session.execute(select(AuditEvent).where(AuditEvent.action == "assigned")).scalars().all()
        assert sorted(e.case_id for e in events) == ids
        assert all(e.detail["bulk"] is True and e.actor == CONSULTANT for e in events)


def test_a_case_changed_since_the_page_is_skipped_and_named(console):
    edited, taken, untouched = (console.case(sender=f"s{i}@clinic.test") for i in range(3))
    client = console.logged_in()
    page = client.get("/queue").text
    values = checkbox_values(page)
    # After Jane's queue page was made, Ada saved a draft of one case and took another.
    actions.edit_draft(console.factory, edited, "Ada's answer in progress.", by=ADMIN)
    actions.assign(console.factory, taken, to=ADMIN, by=ADMIN)
    done = bulk(client, page, "reject", [values[edited], values[taken], values[untouched]],
                reason="duplicate questions", confirm="1")
    assert "Reject: 1 of 3 done" in done.text
    assert f"{ADMIN} saved draft version 2 since your page was made" in done.text
    assert f"now assigned to {ADMIN} (your page showed nobody)" in done.text
    with console.factory() as session:
        assert session.get(Case, edited).status == "awaiting_review"
        assert session.get(Case, edited).drafts[-1].text == "Ada's answer in progress."
        assert session.get(Case, taken).status == "awaiting_review"
        assert session.get(Case, untouched).status == "rejected"
        [event] = session.execute(select(AuditEvent).where(AuditEvent.action == "rejected")).scalars()
        assert event.case_id == untouched and event.detail == {"reason": "duplicate questions",
                                                               "bulk": True}


def test_a_colleague_s_case_is_never_taken_over_in_bulk(console):
    theirs = console.case(sender="t@clinic.test")
    actions.assign(console.factory, theirs, to=ADMIN, by=ADMIN)
    client = console.logged_in()
    page = client.get("/queue").text
    value = checkbox_values(page)[theirs]
    assert value.endswith(f":{ADMIN}")
    done = bulk(client, page, "assign", [value], confirm="1")
    assert "0 of 1 done" in done.text and "take it over from its page" in done.text
    rejected = bulk(client, page, "reject", [value], confirm="1", reason="spam")
    assert "0 of 1 done" in rejected.text and "who may be answering it" in rejected.text
    with console.factory() as session:
        case = session.get(Case, theirs)
        assert case.assigned_to == ADMIN and case.status == "awaiting_review"


def test_bulk_needs_csrf_a_choice_a_selection_and_a_reason(console):
    case_id = console.case()
    client = console.logged_in()
    page = client.get("/queue").text
    value = checkbox_values(page)[case_id]
    forged = client.post("/queue/bulk", data={"action": "reject", "case": [value], "reason": "x",
                                              "confirm": "1"}, follow_redirects=False)
    assert forged.status_code == 403
    for data, message in (({"action": "reject", "case": [value], "confirm": "1"}, "Give a reason"),
                          ({"action": "assign"}, "Select at least one case"),
                          ({"action": "delete", "case": [value]}, "Choose Assign or Reject")):
        response = client.post("/queue/bulk", data={"csrf_token": csrf_of(page), **data})
        assert message in response.text
    with console.factory() as session:
        assert session.get(Case, case_id).status == "awaiting_review"
        assert session.execute(select(AuditEvent).where(
            AuditEvent.action.in_(("rejected", "assigned")))).first() is None
