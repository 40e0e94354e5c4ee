"""The queue and the case page over HTTP: what is shown, and every action with its audit trail."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select

from consultant.models import AuditEvent, Case, Outbox, QuotaEntry
from tests.review.conftest import ADMIN, CONSULTANT, backdate, csrf_of

XSS_HTML = """<html><body><p>Is <b>J1885</b> billed per 15 mg?</p>
<script>window.__xss = 1</script>
<img src="x" onerror="window.__xss = 2">
<a href="javascript:window.__xss = 3">click me</a>
<iframe src="https://evil.example/"></iframe>
<form action="https://evil.example/"><input name=q></form>
</body></html>"""


def html_mail(sender: str = "nurse@clinic.test", subject: str = "J1885 units") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "consult@cc.test"
    msg["Subject"] = subject
    msg["Message-ID"] = "<xss-1@clinic.test>"
    msg.set_content("Is J1885 billed per 15 mg?")
    msg.add_alternative(XSS_HTML, subtype="html")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="op-note.pdf")
    return msg.as_bytes()


def audit_actions(console, case_id):  # type: ignore[no-untyped-def]
    with console.factory() as session:
        return [(e.action, e.actor) for e in session.execute(
            select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)).scalars()]


def post(client, path, **data):  # type: ignore[no-untyped-def]
    page = client.get("/queue")
    return client.post(path, data={"csrf_token": csrf_of(page.text), **data}, follow_redirects=False)


def test_queue_lists_open_cases_oldest_first_against_the_target(console):
    first = console.case(sender="a@clinic.test", subject="First question about 77301")
    second = console.case(sender="b@clinic.test", subject="Second question about 99214")
    backdate(console.factory, first, 5)  # past the default 4-hour target ([sla] default_hours)
    page = console.logged_in().get("/queue").text
    assert page.index(f'data-case="{first}"') < page.index(f'data-case="{second}"')
    row = page[page.index(f'data-case="{first}"'):page.index(f'data-case="{second}"')]
    assert "overdue" in row and "late" in row and "a@clinic.test" in row and "guest · 1" in row


def test_queue_filters_by_status_and_searches_requester_and_code(console):
    kept = console.case(sender="alpha@clinic.test", subject="Modifier question",
                        body="Is modifier 25 needed on 99214 with 20610, DOS 2026-05-01?")
    other = console.case(sender="beta@clinic.test", subject="J1885 units")
    client = console.logged_in()
    post(client, f"/cases/{other}/reject", reason="duplicate of another case")
    open_page = client.get("/queue").text
    assert f'data-case="{kept}"' in open_page and f'data-case="{other}"' not in open_page
    rejected = client.get("/queue", params={"status": "rejected"}).text
    assert f'data-case="{other}"' in rejected and f'data-case="{kept}"' not in rejected
    found = client.get("/queue", params={"status": "all", "q": "ALPHA@"}).text
    assert f'data-case="{kept}"' in found and f'data-case="{other}"' not in found
    by_code = client.get("/queue", params={"q": "20610"}).text  # only in the body's codes
    assert f'data-case="{kept}"' in by_code
    by_number = client.get("/queue", params={"status": "all", "q": f"CC-{other}"}).text
    assert f'data-case="{other}"' in by_number and f'data-case="{kept}"' not in by_number


def test_case_page_shows_mail_safely(console):
    case_id = console.case(raw=html_mail())
    page = console.logged_in().get(f"/cases/{case_id}").text
    assert "Is J1885 billed per 15 mg?" in page
    assert "op-note.pdf" in page and "application/pdf" in page
    # The HTML part only inside a sandboxed srcdoc iframe, sanitised, and escaped as an attribute.
    assert 'sandbox=""' in page and "srcdoc=" in page
    srcdoc = page[page.index("srcdoc="):page.index("</iframe>")]
    for bad in ("script", "onerror", "javascript:", "evil.example", "<form", "&lt;form"):
        assert bad not in srcdoc.lower(), bad
    assert "<script>" not in page.lower() and "window.__xss" not in page
    assert "new_case" in page  # the rule hit that opened the case, with its explanation


def test_edit_then_approve_queues_the_answer_and_records_who(console):
    case_id = console.case()
    client = console.logged_in()
    saved = post(client, f"/cases/{case_id}/save", text="Edited answer.")
    assert saved.status_code == 303
    assert "Edited answer." in client.get(f"/cases/{case_id}").text
    approved = post(client, f"/cases/{case_id}/approve", text="Final answer: yes, with modifier 59.")
    assert approved.status_code == 303
    [effects] = console.dispatched
    with console.factory() as session:
        case = session.get(Case, case_id)
        out = session.get(Outbox, effects.outbox_ids[0])
        assert case.status == "approved" and out.approved_by == CONSULTANT and out.charges_quota
        assert b"Final answer: yes, with modifier 59." in out.raw
    # (the quota's "charged" event sits between them)
    assert [e for e in audit_actions(console, case_id) if e[0] != "charged"][-3:] == [
        ("edited", CONSULTANT), ("edited", CONSULTANT), ("approved", CONSULTANT)]
    # A second approval is refused with the reason shown, not a crash.
    again = post(client, f"/cases/{case_id}/approve", text="again")
    assert again.status_code == 303
    assert "only cases awaiting review or needing info can be approved" in client.get(f"/cases/{case_id}").text


def test_request_info_sends_a_question_without_charge_until_the_reply(console):
    from consultant.processing import process_mail
    from tests.conftest import question_mail

    case_id = console.case(message_id="<q-1@clinic.test>")
    client = console.logged_in()
    post(client, f"/cases/{case_id}/request-info", text="Which payer, and what date of service?")
    [effects] = console.dispatched
    with console.factory() as session:
        case = session.get(Case, case_id)
        out = session.get(Outbox, effects.outbox_ids[0])
        assert case.status == "awaiting_reply" and out.kind == "needs_info" and not out.charges_quota
        assert b"Which payer, and what date of service?" in out.raw
        assert session.execute(select(QuotaEntry).where(QuotaEntry.kind == "charge")).first() is None
        question_id = out.message_id
    actions_done = audit_actions(console, case_id)
    assert ("info_requested", CONSULTANT) in actions_done and ("approved", CONSULTANT) not in actions_done
    # The question went out: the case is no longer approvable with the same text.
    page = client.get(f"/cases/{case_id}").text
    assert 'id="approve"' not in page and "awaiting reply" in page
    again = post(client, f"/cases/{case_id}/approve", text="Which payer, and what date of service?")
    assert again.status_code == 303 and len(console.dispatched) == 1
    assert "is awaiting reply" in client.get(f"/cases/{case_id}").text
    # The requester's reply joins the case and sends it back to drafting.
    from consultant.intake.store import Location, store_raw

    reply = question_mail(subject="Re: question", body="Medicare, DOS 2026-05-01.",
                          In_Reply_To=question_id)
    process_mail(console.factory, console.settings, store_raw(console.factory, reply, Location("cli")).mail_id)
    with console.factory() as session:
        case = session.get(Case, case_id)
        assert len(case.mails) == 2 and case.drafts[-1].author == "machine"
        assert case.status in ("awaiting_review", "needs_info")


def test_reject_assign_and_release_are_audited(console):
    case_id = console.case()
    client = console.logged_in()
    post(client, f"/cases/{case_id}/assign")
    with console.factory() as session:
        assert session.get(Case, case_id).assigned_to == CONSULTANT
    post(client, f"/cases/{case_id}/assign", release="1")
    empty = post(client, f"/cases/{case_id}/reject", reason="  ")
    assert empty.status_code == 303
    post(client, f"/cases/{case_id}/reject", reason="Not a coding question.")
    with console.factory() as session:
        case = session.get(Case, case_id)
        assert case.status == "rejected" and case.reject_reason == "Not a coding question."
        assert case.assigned_to is None
    assert audit_actions(console, case_id)[-3:] == [
        ("assigned", CONSULTANT), ("assigned", CONSULTANT), ("rejected", CONSULTANT)]
    assert console.dispatched == []


def test_knowledge_note_is_saved_and_shown(console):
    case_id = console.case(subject="Can 77301 and 77338 be billed together?")
    client = console.logged_in()
    response = post(client, f"/cases/{case_id}/note", subject="77301+77338",
                    text="Payer X bundles these; bill 77301 only.")
    assert response.status_code == 303
    page = client.get(f"/cases/{case_id}").text
    assert "Payer X bundles these; bill 77301 only." in page and CONSULTANT in page
    assert ("note_added", CONSULTANT) in audit_actions(console, case_id)
    bad = post(client, f"/cases/{case_id}/note", subject="not-a-code", text="x")
    assert bad.status_code == 303
    assert "not a CPT, HCPCS or ICD-10-CM code" in client.get(f"/cases/{case_id}").text


def test_only_admins_change_plans(console):
    case_id = console.case(sender="held@clinic.test")
    console.case(sender="held@clinic.test", subject="A second question while on the guest plan")
    consultant = console.logged_in()
    refused = post(consultant, "/requesters/plan", email="held@clinic.test", plan="registered")
    assert refused.status_code == 403
    admin = console.logged_in(ADMIN)
    page = admin.get("/requesters").text
    assert "held@clinic.test" in page
    done = post(admin, "/requesters/plan", email="held@clinic.test", plan="registered")
    assert done.status_code == 303
    [effects] = console.dispatched
    assert len(effects.draft_case_ids) == 1 and case_id not in effects.draft_case_ids
    with console.factory() as session:
        events = session.execute(select(AuditEvent).where(AuditEvent.action == "plan_changed")).scalars().all()
        assert [(e.actor, e.detail["to"]) for e in events] == [(ADMIN, "registered")]
    unknown = post(admin, "/requesters/plan", email="held@clinic.test", plan="platinum")
    assert unknown.status_code == 303 and "unknown plan" in admin.get("/requesters").text


def test_unknown_case_is_a_404_page(console):
    response = console.logged_in().get("/cases/999999")
    assert response.status_code == 404 and "does not exist" in response.text
