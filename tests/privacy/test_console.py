"""A PHI case in the console, in a real browser: what was removed is shown, and approving it
needs the one explicit confirmation."""

from __future__ import annotations

from consultant.models import Case
from tests.review.conftest import make_case
from tests.review.test_browser import browser, log_in, page  # noqa: F401  (fixtures)

BODY = ("Patient: Maria Gonzalez, DOB 02/14/1951, MRN 00482913. Medicare, DOS 04/21/2026. "
        "We gave ketorolac 30 mg IM. How many units of J1885?")


def test_a_phi_case_shows_what_was_removed_and_needs_the_confirmation(served, page):  # noqa: F811
    case_id = make_case(served.factory, served.settings, subject="Units for Maria Gonzalez",
                        body=BODY)
    log_in(page, served)
    page.goto(f"{served.url}/cases/{case_id}")
    removed = page.locator("#phi-removed").inner_text()
    assert "2 × name" in removed and "1 × dob" in removed and "1 × mrn" in removed
    content = page.content()
    assert "Gonzalez" not in content and "02/14/1951" not in content and "00482913" not in content
    page.fill("#draft-text", "J1885 is per 15 mg: 30 mg is 2 units.")
    page.click("#approve")
    page.wait_for_load_state()
    assert "confirm that the answer holds none of them" in page.content()
    with served.factory() as session:
        assert session.get(Case, case_id).status == "awaiting_review"
    page.fill("#draft-text", "J1885 is per 15 mg: 30 mg is 2 units.")
    page.check("#confirm-phi")
    page.click("#approve")
    page.wait_for_load_state()
    with served.factory() as session:
        assert session.get(Case, case_id).status == "approved"
