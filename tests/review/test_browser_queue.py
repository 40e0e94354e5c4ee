"""Working the queue in a real browser (Debian's Chromium via Playwright): filters, sorts and
pages, "next" following them, bulk assign, a macro inserted at the cursor, the SLA breach list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from consultant.models import AuditEvent, Case, Requester
from consultant.review.web import queries
from tests.review.conftest import CONSULTANT
from tests.review.test_browser import backdate, browser, live, log_in, page, screenshot  # noqa: F401
from tests.servers import wait_for


def row_ids(page: Any) -> list[int]:  # noqa: F811
    return [int(v) for v in page.eval_on_selector_all("tr.row[data-case]",
                                                      "rows => rows.map(r => r.dataset.case)")]


def test_filters_sort_and_pages_and_next_follows_them(live, page, monkeypatch):  # noqa: F811
    monkeypatch.setattr(queries, "PAGE_SIZE", 2)  # the server runs in this process
    senders = ["dora@d.test", "abe@a.test", "cleo@c.test", "bea@b.test"]
    ids = [live.case(sender=s, subject=f"Question from {s}") for s in senders]
    for case_id, hours in zip(ids, (4, 3, 2, 1), strict=True):
        backdate(live, case_id, hours)
    with live.factory() as session, session.begin():
        session.execute(update(Case).where(Case.id == ids[0]).values(assigned_to=CONSULTANT))
    log_in(page, live)
    assert row_ids(page) == ids[:2]  # oldest first, two a page
    assert "page 1 of 2" in page.locator("#page-of").inner_text()
    page.click("#page-next")
    assert row_ids(page) == ids[2:]

    page.check("#filter-unassigned")
    page.select_option("#sort", "requester")
    page.click("#apply-view")
    assert "f=unassigned" in page.url and "sort=requester" in page.url
    assert row_ids(page) == [ids[1], ids[3]]  # abe, bea (dora's case is mine: filtered out)
    page.click("#page-next")
    assert row_ids(page) == [ids[2]]  # cleo
    page.click("#page-prev")

    # The case page's next/previous follow the view: abe -> bea -> cleo, by requester.
    page.locator("tr.row a").first.click()
    page.wait_for_url(f"{live.url}/cases/{ids[1]}?f=unassigned&sort=requester")
    page.keyboard.press("Escape")  # out of the editor, so the single-key shortcuts work
    page.keyboard.press("j")
    page.wait_for_url(f"{live.url}/cases/{ids[3]}?f=unassigned&sort=requester")
    page.fill("#draft-text", "Yes, both may be reported.")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    assert f"Case {ids[3]} approved" in page.locator(".flash[role=status]").inner_text()
    assert page.url == f"{live.url}/cases/{ids[2]}?f=unassigned&sort=requester"
    page.click("#back-to-queue")
    assert page.locator("#filter-unassigned").is_checked()
    assert page.input_value("#sort") == "requester"


def test_bulk_assign_with_a_confirmation(live, page, tmp_path):  # noqa: F811
    ids = [live.case(sender=f"b{i}@bulk.test", subject=f"Bulk question {i}") for i in range(3)]
    for case_id, hours in zip(ids, (3, 2, 1), strict=True):
        backdate(live, case_id, hours)
    log_in(page, live)
    page.check(f'tr[data-case="{ids[0]}"] input.pick')
    page.keyboard.press("j")  # the highlight moves to the second row; x ticks it
    page.keyboard.press("x")
    assert page.locator(f'tr[data-case="{ids[1]}"] input.pick').is_checked()
    assert not page.locator(f'tr[data-case="{ids[2]}"] input.pick').is_checked()
    page.click("#bulk-assign")
    assert "Assign to me: 2 cases?" in page.locator("#bulk-confirm").inner_text()
    with live.factory() as session:
        assert all(session.get(Case, i).assigned_to is None for i in ids)
    page.click("#confirm-bulk")
    assert "2 of 2 done" in page.locator("#bulk-result").inner_text()
    with live.factory() as session:
        assert [session.get(Case, i).assigned_to for i in ids] == [CONSULTANT, CONSULTANT, None]
        assert len(session.execute(select(AuditEvent).where(AuditEvent.action == "assigned"))
                   .scalars().all()) == 2
    page.click("#bulk-back")
    assert row_ids(page) == ids


def test_a_macro_is_inserted_at_the_cursor(live, page):  # noqa: F811
    case_id = live.case(sender="pat@ortho.test", subject="Modifier 25?")
    with live.factory() as session, session.begin():
        session.execute(update(Requester).where(Requester.email == "pat@ortho.test")
                        .values(name="Pat Ortho"))
    log_in(page, live)
    page.click("header nav a[href='/macros']")
    page.fill("#macro-name", "Thanks")
    page.fill("#macro-text", "Thank you, {{ requester_name }} ({{ case_ref }}). ")
    page.click("#save-macro")
    assert "Macro “Thanks” saved" in page.locator(".flash[role=status]").inner_text()
    page.goto(f"{live.url}/cases/{case_id}")
    page.fill("#draft-text", "Hello,\n\nYes.")
    page.evaluate("(() => { const t = document.getElementById('draft-text');"
                  " t.focus(); t.setSelectionRange(8, 8); })()")  # after "Hello,\n\n"
    page.keyboard.press("F9")
    assert page.evaluate("document.activeElement.id") == "macro-pick"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "draft-text"
    expected = f"Hello,\n\nThank you, Pat Ortho (CC-{case_id}). Yes."
    assert page.input_value("#draft-text") == expected
    caret = page.evaluate("document.getElementById('draft-text').selectionStart")
    assert caret == len(f"Hello,\n\nThank you, Pat Ortho (CC-{case_id}). ")
    page.click("#insert-macro")  # by pointer: at the caret again
    assert page.input_value("#draft-text").count("Thank you, Pat Ortho") == 2
    page.click("button#save")
    with live.factory() as session:
        assert session.get(Case, case_id).drafts[-1].text.startswith(expected[:-4])


def test_the_sla_breach_list(live, page, tmp_path):  # noqa: F811
    late = live.case(sender="late@sla.test", subject="Waiting since this morning")
    soon = live.case(sender="soon@sla.test", subject="Due within the hour")
    fresh = live.case(sender="fresh@sla.test", subject="Just in")
    backdate(live, late, 6)
    backdate(live, soon, 3.5)
    log_in(page, live)
    page.click("header nav a[href='/sla']")
    wait_for(lambda: page.locator("#overdue").is_visible(), timeout=10, what="the SLA page")
    overdue = page.locator("#overdue tr.row")
    assert [int(overdue.nth(i).get_attribute("data-case")) for i in range(overdue.count())] == [late]
    assert "late" in overdue.first.inner_text()
    assert [int(v) for v in page.eval_on_selector_all(
        "#due-soon tr.row", "rows => rows.map(r => r.dataset.case)")] == [soon]
    assert page.locator(f'tr[data-case="{fresh}"]').count() == 0
    screenshot(page, tmp_path, "sla.png")
    page.click("text=Queue by SLA")
    assert row_ids(page)[:3] == [late, soon, fresh]
