"""Console details a consultant meets every day: error pages, search, labels, plurals, tokens,
notes (internal and customer-facing), per-case internal notes and the self-hosted API docs."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from consultant.models import Case, Draft, Outbox
from consultant.review import auth
from tests.review.conftest import ADMIN, CONSULTANT
from tests.review.test_case_actions import post


@pytest.mark.parametrize("path", ["/cases/abc", "/cases/0", "/cases/99999999999999999999",
                                  "/cases/999999"])
def test_every_bad_case_id_gets_the_console_s_error_page(console, path):
    response = console.logged_in().get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Back to the queue" in response.text and "Jane Coder" in response.text


def test_a_post_to_a_bad_case_id_is_an_error_page_too(console):
    response = post(console.logged_in(), "/cases/abc/save", text="x")
    assert response.status_code == 404 and "Back to the queue" in response.text


def test_search_treats_percent_and_underscore_literally(console):
    plain = console.case(sender="plain@clinic.test", subject="Units for J1885")
    percent = console.case(sender="pct@clinic.test", subject="Is 50% reduction applied to 27447?")
    underscore = console.case(sender="under_score@clinic.test", subject="Modifier question")
    client = console.logged_in()
    found = client.get("/queue", params={"q": "%"}).text
    assert f'data-case="{percent}"' in found and f'data-case="{plain}"' not in found
    found = client.get("/queue", params={"q": "_"}).text
    assert f'data-case="{underscore}"' in found and f'data-case="{plain}"' not in found


def test_flags_are_labelled_for_people_and_counts_are_plural_where_due(console):
    case_id = console.case()
    with console.factory() as session, session.begin():
        session.execute(update(Case).where(Case.id == case_id).values(flags=["data_older_than_dos"]))
    client = console.logged_in()
    page = client.get(f"/cases/{case_id}").text
    assert "code data older than the date of service" in page and "data_older_than_dos" not in page
    assert "1 answer left" in page and "answer(s)" not in page and "1 answers" not in page
    assert "code data older than the date of service" in client.get("/queue").text


def test_tokens_minted_anywhere_are_listed_and_can_be_revoked(console):
    from tests.review.conftest import TestClient

    cli_token = auth.mint_token(console.factory, CONSULTANT, "billing-system")  # as the CLI does
    admin_token = auth.mint_token(console.factory, ADMIN, "admin-script")
    jane = console.logged_in()
    page = jane.get("/account").text
    assert "billing-system" in page and cli_token[:10] in page and cli_token not in page
    assert "admin-script" not in page  # a consultant sees only their own
    with console.factory() as session:
        from consultant.review.models import ApiToken

        mine = session.execute(select(ApiToken.id).where(ApiToken.name == "billing-system")).scalar_one()
        theirs = session.execute(select(ApiToken.id).where(ApiToken.name == "admin-script")).scalar_one()
    refused = post(jane, f"/account/token/{theirs}/revoke")
    assert refused.status_code == 303 and f"no token {theirs} of yours" in jane.get("/account").text
    assert TestClient(console.app).get("/api/v1/cases", headers={
        "Authorization": f"Bearer {admin_token}"}).status_code == 200  # not revoked by her
    done = post(jane, f"/account/token/{mine}/revoke")
    assert done.status_code == 303
    page = jane.get("/account").text
    assert "revoked" in page
    api = TestClient(console.app)
    assert api.get("/api/v1/cases", headers={"Authorization": f"Bearer {cli_token}"}).status_code == 401
    assert "admin-script" in console.logged_in(ADMIN).get("/account").text  # admins see all


def _draft_text(console, case_id):  # type: ignore[no-untyped-def]
    with console.factory() as session:
        return session.execute(select(Draft.text).where(Draft.case_id == case_id)
                               .order_by(Draft.version.desc())).scalars().first()


def test_knowledge_notes_are_internal_unless_marked_customer_facing(console):
    subject = "Can 77301 and 77338 be billed together?"
    first = console.case(sender="a@radonc.test", subject=subject)
    client = console.logged_in()
    post(client, f"/cases/{first}/note", subject="77301+77338", text="Internal: payer X audits this pair.")
    post(client, f"/cases/{first}/note", subject="77301+77338", customer_facing="1",
         text="<b>Bill</b> 77338 once per course <script>alert(1)</script>of treatment.")
    later = console.case(sender="b@radonc.test", subject=subject, message_id="<later@radonc.test>")
    text = _draft_text(console, later)
    assert "Bill 77338 once per course of treatment." in text
    assert "payer X audits" not in text and CONSULTANT not in text and "<b>" not in text
    assert "alert" not in text
    # The console shows both to consultants, each with its author and audience.
    page = client.get(f"/cases/{later}").text
    assert "Internal: payer X audits this pair." in page and "in answers" in page and "internal" in page


def test_an_internal_case_note_never_goes_into_the_answer(console):
    case_id = console.case()
    client = console.logged_in()
    saved = post(client, f"/cases/{case_id}/internal-note", text="Called the practice: op note due Friday.")
    assert saved.status_code == 303
    assert "Called the practice: op note due Friday." in client.get(f"/cases/{case_id}").text
    post(client, f"/cases/{case_id}/approve", text="Yes, bill it once.")
    with console.factory() as session:
        [out] = session.execute(select(Outbox)).scalars().all()
        assert b"Yes, bill it once." in out.raw and b"op note due" not in out.raw


def test_api_docs_are_served_from_the_console_itself(console):
    client = console.logged_in()
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assert 'src="/api/v1/static/swagger-ui-bundle.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    bundle = client.get("/api/v1/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
    assert client.get("/static/api-docs.js").status_code == 200
