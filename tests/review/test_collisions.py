"""Two consultants on one case: optimistic locking of drafts, takeover, presence, and the
only-the-assignee-approves setting (over HTTP; the browser test shows the same in Chromium)."""

from __future__ import annotations

from sqlalchemy import select

from consultant.models import AuditEvent, Case, Outbox
from tests.review.conftest import ADMIN, CONSULTANT, csrf_of
from tests.review.test_case_actions import audit_actions


def form_of(client, case_id):  # type: ignore[no-untyped-def]
    """The CSRF token and draft version the case page's editor form carries."""
    import re

    page = client.get(f"/cases/{case_id}").text
    version = re.search(r'name="version" value="(\d+)"', page)
    assert version, "the editor form carries no draft version"
    return {"csrf_token": csrf_of(page), "version": version.group(1)}


def test_a_save_from_an_overtaken_page_is_refused_with_a_diff_and_nothing_is_lost(console):
    case_id = console.case()
    jane, ada = console.logged_in(CONSULTANT), console.logged_in(ADMIN)
    janes_form, adas_form = form_of(jane, case_id), form_of(ada, case_id)
    assert janes_form["version"] == adas_form["version"] == "1"
    first = jane.post(f"/cases/{case_id}/save", data={**janes_form, "text": "Jane's answer: use 59."},
                      follow_redirects=False)
    assert first.status_code == 303
    stale = ada.post(f"/cases/{case_id}/save", data={**adas_form, "text": "Ada's answer: use XU."},
                     follow_redirects=False)
    assert stale.status_code == 409
    assert "Jane Coder" in stale.text or CONSULTANT in stale.text
    assert "version 2" in stale.text
    # Her text is still in the editor, and the diff shows both.
    assert "Ada&#39;s answer: use XU." in stale.text and "Jane&#39;s answer: use 59." in stale.text
    assert 'class="del"' in stale.text and 'class="add"' in stale.text
    with console.factory() as session:
        case = session.get(Case, case_id)
        assert case.drafts[-1].text == "Jane's answer: use 59." and len(case.drafts) == 2
    # Having seen the diff she saves again, now from version 2: accepted.
    again = ada.post(f"/cases/{case_id}/save", data={**form_of(ada, case_id), "text": "Ada's answer: use XU."},
                     follow_redirects=False)
    assert again.status_code == 303
    with console.factory() as session:
        assert session.get(Case, case_id).drafts[-1].author == ADMIN


def test_an_approval_from_an_overtaken_page_sends_nothing(console):
    case_id = console.case()
    jane, ada = console.logged_in(CONSULTANT), console.logged_in(ADMIN)
    adas_form = form_of(ada, case_id)
    jane.post(f"/cases/{case_id}/save", data={**form_of(jane, case_id), "text": "Jane's edit."})
    refused = ada.post(f"/cases/{case_id}/approve", data={**adas_form, "text": "Ada's answer."},
                       follow_redirects=False)
    assert refused.status_code == 409 and "Not saved" in refused.text
    assert console.dispatched == []
    with console.factory() as session:
        assert session.get(Case, case_id).status == "awaiting_review"
        assert session.execute(select(Outbox)).first() is None


def test_taking_over_someone_else_s_case_needs_a_confirmation_and_is_audited(console):
    case_id = console.case()
    jane, ada = console.logged_in(CONSULTANT), console.logged_in(ADMIN)
    jane.post(f"/cases/{case_id}/assign", data={"csrf_token": form_of(jane, case_id)["csrf_token"]})
    page = ada.get(f"/cases/{case_id}").text
    assert "Take over…" in page and "Assign to me" not in page
    asked = ada.post(f"/cases/{case_id}/assign", data={"csrf_token": csrf_of(page)},
                     follow_redirects=False)
    assert asked.status_code == 409 and f"assigned to {CONSULTANT}" in asked.text
    assert 'name="takeover" value="1"' in asked.text
    with console.factory() as session:
        assert session.get(Case, case_id).assigned_to == CONSULTANT
    done = ada.post(f"/cases/{case_id}/assign", data={"csrf_token": csrf_of(asked.text), "takeover": "1"},
                    follow_redirects=False)
    assert done.status_code == 303
    with console.factory() as session:
        assert session.get(Case, case_id).assigned_to == ADMIN
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "taken_over")).scalar_one()
        assert event.actor == ADMIN and event.detail == {"from": CONSULTANT, "to": ADMIN}
    assert audit_actions(console, case_id)[-2:] == [("assigned", CONSULTANT), ("taken_over", ADMIN)]


def test_the_case_page_says_who_else_is_viewing_or_editing(console):
    case_id = console.case()
    jane, ada = console.logged_in(CONSULTANT), console.logged_in(ADMIN)
    assert "is viewing" not in jane.get(f"/cases/{case_id}").text
    ada.get(f"/cases/{case_id}")
    assert "Ada Admin</strong> is viewing this case" in jane.get(f"/cases/{case_id}").text
    ada.post(f"/cases/{case_id}/save", data={**form_of(ada, case_id), "text": "Ada's edit"})
    assert "Ada Admin</strong> is editing this case" in jane.get(f"/cases/{case_id}").text
    assert "Ada Admin</strong> is" not in ada.get(f"/cases/{case_id}").text  # not about oneself


def test_only_the_assignee_may_approve_when_so_configured(console):
    console.settings.console.only_assignee_approves = True
    case_id = console.case()
    jane, ada = console.logged_in(CONSULTANT), console.logged_in(ADMIN)
    jane.post(f"/cases/{case_id}/assign", data={"csrf_token": form_of(jane, case_id)["csrf_token"]})
    refused = ada.post(f"/cases/{case_id}/approve", data={**form_of(ada, case_id), "text": "Yes."})
    assert "only they may approve it" in refused.text and console.dispatched == []
    done = jane.post(f"/cases/{case_id}/approve", data={**form_of(jane, case_id), "text": "Yes."},
                     follow_redirects=False)
    assert done.status_code == 303 and len(console.dispatched) == 1
