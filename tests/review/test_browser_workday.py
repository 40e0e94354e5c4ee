"""A consultant's day in a real browser (Debian's Chromium via Playwright): two consultants on
one case, a takeover, keyboard-only approvals, an internal note that never reaches the
requester (checked at the SMTP sink), and the API docs under the console's CSP."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from consultant.models import Case, Draft
from tests.review.conftest import ADMIN, CONSULTANT
from tests.review.test_browser import backdate, browser, live, log_in, page  # noqa: F401 (fixtures)
from tests.servers import wait_for


def second_page(browser: Any) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    return context.new_page()


def test_two_consultants_edit_one_case_and_the_second_save_is_refused(live, page, browser):  # noqa: F811
    case_id = live.case(sender="coder@ortho.test")
    ada = second_page(browser)
    try:
        log_in(page, live)
        log_in(ada, live, ADMIN)
        page.goto(f"{live.url}/cases/{case_id}")
        ada.goto(f"{live.url}/cases/{case_id}")
        assert "Jane Coder is viewing this case" in " ".join(ada.locator(".viewer").inner_text().split())
        page.fill("#draft-text", "Jane: report 99214-25 with 20610.")
        page.click("button#save")
        assert "Draft saved." in page.locator(".flash[role=status]").inner_text()

        ada.fill("#draft-text", "Ada: modifier 25 is not supported here.")
        ada.click("button#save")
        notice = ada.locator("#stale")
        assert "Jane Coder" in notice.inner_text() or CONSULTANT in notice.inner_text()
        assert "Jane: report 99214-25 with 20610." in ada.locator("#stale pre.diff").inner_text()
        # Nothing lost: her text is still in the editor, and Jane's version is the saved one.
        assert ada.input_value("#draft-text") == "Ada: modifier 25 is not supported here."
        with live.factory() as session:
            assert session.get(Case, case_id).drafts[-1].text == "Jane: report 99214-25 with 20610."
        ada.click("button#save")  # now knowingly, from the version she has seen
        assert "Draft saved." in ada.locator(".flash[role=status]").inner_text()
        with live.factory() as session:
            assert session.get(Case, case_id).drafts[-1].author == ADMIN
    finally:
        ada.context.close()


def test_taking_over_a_colleague_s_case_asks_first(live, page, browser):  # noqa: F811
    case_id = live.case(sender="coder@peds.test")
    ada = second_page(browser)
    try:
        log_in(page, live)
        page.goto(f"{live.url}/cases/{case_id}")
        page.click("button#assign")
        assert "Assigned to you." in page.locator(".flash[role=status]").inner_text()
        log_in(ada, live, ADMIN)
        ada.goto(f"{live.url}/cases/{case_id}")
        ada.click("button#assign")  # "Take over…"
        assert f"assigned to {CONSULTANT}" in ada.locator("#takeover h1").inner_text()
        ada.click("button#confirm-takeover")
        assert "Assigned to you." in ada.locator(".flash[role=status]").inner_text()
        assert "taken over" in ada.locator("table#audit").inner_text()
    finally:
        ada.context.close()


def test_three_cases_approved_in_a_row_with_the_keyboard_only(live, page):  # noqa: F811
    ids = [live.case(sender=f"coder{i}@clinic{i}.test", subject=f"J1885 units, question {i}",
                     body="Ketorolac 60 mg IV given in the ED. How many units of J1885?")
           for i in range(3)]
    for case_id, hours in zip(ids, (3.0, 2.0, 1.0), strict=True):
        backdate(live, case_id, hours)
    # The middle case is one the data decides: its draft has no [Consultant: …] prompt left.
    with live.factory() as session, session.begin():
        version = session.execute(select(func.max(Draft.version)).where(Draft.case_id == ids[1])).scalar()
        session.add(Draft(case_id=ids[1], version=version + 1, template="units", author="machine",
                          kind="answer", text="Hello,\n\nJ1885 is per 15 mg: 60 mg is 4 units.\n"))
    log_in(page, live)
    page.goto(f"{live.url}/cases/{ids[0]}")
    answers = {ids[0]: "Four units: J1885 is 15 mg per unit.", ids[2]: "Report 4 units of J1885."}
    presses = 0
    for case_id in ids:
        assert page.url == f"{live.url}/cases/{case_id}"
        # The editor has the focus, the first prompt selected: typing replaces it.
        assert page.evaluate("document.activeElement.id") == "draft-text"
        if case_id in answers:
            selected = page.evaluate("(() => { const t = document.getElementById('draft-text');"
                                     " return t.value.slice(t.selectionStart, t.selectionEnd); })()")
            assert selected.startswith("[Consultant:") and selected.endswith("]")
            page.keyboard.type(answers[case_id])
        with page.expect_navigation():
            page.keyboard.press("Control+Enter")
            presses += 1
        assert f"Case {case_id} approved" in page.locator(".flash[role=status]").inner_text()
    assert presses == 3
    # What was queued for each requester (delivery itself is checked by the other browser tests).
    from email import policy
    from email.parser import BytesParser

    from consultant.models import Outbox

    with live.factory() as session:
        queued = {o.to_addr: BytesParser(policy=policy.default).parsebytes(o.raw)
                  .get_body(preferencelist=("plain",)).get_content()
                  for o in session.execute(select(Outbox)).scalars()}
    assert len(queued) == 3
    assert "Four units: J1885 is 15 mg per unit." in queued["coder0@clinic0.test"]
    assert "60 mg is 4 units" in queued["coder1@clinic1.test"]
    assert "Report 4 units of J1885." in queued["coder2@clinic2.test"]
    assert "[Consultant:" not in "".join(queued.values())


def test_question_mark_shows_the_shortcuts(live, page):  # noqa: F811
    live.case(sender="coder@help.test")
    log_in(page, live)
    page.keyboard.press("?")
    assert page.locator("dialog#shortcuts").is_visible()
    assert "Ctrl" in page.locator("dialog#shortcuts").inner_text()


def test_an_internal_note_is_absent_from_the_mail_at_the_smtp_sink(live, page):  # noqa: F811
    case_id = live.case(sender="coder@cardio.test")
    log_in(page, live)
    page.goto(f"{live.url}/cases/{case_id}")
    page.fill("textarea[name=text][aria-label='Internal note']", "Internal: the practice owes us the op note.")
    page.click("button#add-case-note")
    assert "never sent" in page.locator(".flash[role=status]").inner_text()
    page.fill("#draft-text", "Yes: 77301 and 77338 may be reported on the same day.")
    page.click("button#approve")
    wait_for(lambda: len(live.sink.messages) == 1, timeout=30, what="the answer at the SMTP sink")
    raw = live.sink.messages[0]["raw"]
    assert b"op note" not in raw and b"Internal:" not in raw
    [msg] = live.sink.parsed()
    assert "may be reported on the same day" in msg.get_body(preferencelist=("plain",)).get_content()


def test_api_docs_render_with_no_csp_violation_and_no_third_party_request(live, page):  # noqa: F811
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    foreign: list[str] = []
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith((live.url, "data:")) else None)
    log_in(page, live)
    page.goto(f"{live.url}/api/v1/docs")
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=20_000)
    assert "CaseConsultant API" in page.locator(".swagger-ui .info").inner_text()
    assert page.locator(".opblock-summary-path", has_text="/cases/{case_id}/approve").count() >= 1
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
    assert problems == [] and foreign == []


def test_a_quarantined_mail_released_in_the_console_becomes_a_draft(live, page):  # noqa: F811
    from consultant.intake.store import Location, store_raw
    from consultant.models import InboundMail
    from consultant.processing import process_mail
    from tests.conftest import question_mail

    limit = live.settings.service.max_message_bytes
    live.settings.service.max_message_bytes = 100  # quarantined as too large, the real way
    mail_id = store_raw(live.factory, question_mail(sender="big@ortho.test", subject="Big question on 20610"),
                        Location("cli")).mail_id
    process_mail(live.factory, live.settings, mail_id)
    live.settings.service.max_message_bytes = limit  # the operator raised the limit
    log_in(page, live)
    page.click("nav a[href='/quarantine']")
    page.click(f"tr[data-mail='{mail_id}'] a")
    assert "message too large" in page.locator("#reason").inner_text()
    page.click("button#release-mail")
    assert f"Mail {mail_id} released" in page.locator(".flash[role=status]").inner_text()
    with live.factory() as session:
        case_id = session.get(InboundMail, mail_id).case_id
    assert page.url == f"{live.url}/cases/{case_id}"
    assert "Big question on 20610" in page.locator("h1").inner_text()
    assert page.input_value("#draft-text").startswith("Hello")
    assert "mail released" in page.locator("table#audit").inner_text()
