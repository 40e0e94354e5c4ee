"""The REST API: bearer tokens, JSON errors, cases, requesters, codes, OpenAPI."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from consultant.models import Case
from consultant.review import auth
from consultant.review.models import ApiToken
from tests.review.conftest import ADMIN, CONSULTANT


@pytest.fixture
def api(console):  # type: ignore[no-untyped-def]
    client = console.client()
    token = auth.mint_token(console.factory, CONSULTANT, "tests")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_requests_without_a_valid_token_get_json_401(console):
    client = console.client()
    for headers in ({}, {"Authorization": "Bearer cc_not-a-token"}, {"Authorization": "Basic eDp5"}):
        response = client.get("/api/v1/cases", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "a valid bearer token is required"}
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_session_cookie_is_not_an_api_credential(console):
    browser = console.logged_in()
    assert browser.get("/api/v1/cases").status_code == 401


def test_only_a_digest_of_the_token_is_stored(console):
    token = auth.mint_token(console.factory, CONSULTANT)
    with console.factory() as session:
        row = session.execute(select(ApiToken)).scalar_one()
        assert token not in (row.token_hash, row.prefix) and len(row.token_hash) == 64
    assert auth.revoke_tokens(console.factory, CONSULTANT) == 1
    client = console.client()
    assert client.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_list_show_approve_reject(console, api):
    first = console.case(sender="one@clinic.test")
    second = console.case(sender="two@clinic.test", subject="Second")
    listed = api.get("/api/v1/cases", params={"status": "awaiting_review"}).json()
    assert [c["id"] for c in listed] == [first, second]
    shown = api.get(f"/api/v1/cases/{first}").json()
    assert shown["requester"] == "one@clinic.test" and shown["draft"]["author"] == "machine"
    assert shown["mails"][0]["disposition"] == "case"

    approved = api.post(f"/api/v1/cases/{first}/approve", json={"text": "Yes, both are billable."})
    assert approved.status_code == 200 and approved.json()["outbox_ids"] == console.dispatched[0].outbox_ids
    conflict = api.post(f"/api/v1/cases/{first}/approve", json={})
    assert conflict.status_code == 409 and "approved" in conflict.json()["error"]

    assert api.post(f"/api/v1/cases/{second}/reject", json={}).status_code == 422
    rejected = api.post(f"/api/v1/cases/{second}/reject", json={"reason": "spam"})
    assert rejected.json() == {"id": second, "status": "rejected"}
    with console.factory() as session:
        assert session.get(Case, first).status == "approved"
        assert session.get(Case, second).reject_reason == "spam"

    assert api.get("/api/v1/cases/424242").json() == {"error": "case 424242 does not exist"}
    assert api.get("/api/v1/cases", params={"status": "bogus"}).status_code == 422


def test_requesters_show_and_plan_changes_need_admin(console, api):
    console.case(sender="req@clinic.test")
    shown = api.get("/api/v1/requesters/req@clinic.test").json()
    assert {k: shown[k] for k in ("email", "plan", "kind", "org", "answers_used",
                                  "answers_remaining", "answers_allowed")} == {
        "email": "req@clinic.test", "plan": "guest", "kind": "lifetime", "org": None,
        "answers_used": 0, "answers_remaining": 1, "answers_allowed": 1}
    assert [(e["kind"], e["delta"], e["who"]) for e in shown["ledger"]] == [("grant", 1, "system")]
    [listed] = api.get("/api/v1/requesters", params={"q": "req@"}).json()
    assert listed["email"] == "req@clinic.test" and listed["answers_remaining"] == 1
    refused = api.post("/api/v1/requesters/req@clinic.test/grants", json={"answers": 3, "why": "x"})
    assert refused.status_code == 403
    assert api.get("/api/v1/requesters/nobody@clinic.test").status_code == 404
    refused = api.put("/api/v1/requesters/req@clinic.test/plan", json={"plan": "registered"})
    assert refused.status_code == 403 and refused.json() == {"error": "admin role required"}

    admin = console.client()
    admin.headers["Authorization"] = "Bearer " + auth.mint_token(console.factory, ADMIN)
    changed = admin.put("/api/v1/requesters/req@clinic.test/plan", json={"plan": "registered"})
    assert changed.status_code == 200 and changed.json()["answers_remaining"] == 6
    bad = admin.put("/api/v1/requesters/req@clinic.test/plan", json={"plan": "platinum"})
    assert bad.status_code == 422 and "unknown plan" in bad.json()["error"]
    granted = admin.post("/api/v1/requesters/req@clinic.test/grants",
                         json={"answers": 3, "why": "goodwill after an outage"})
    assert granted.status_code == 200 and granted.json()["answers_remaining"] == 9
    assert granted.json()["granted"]["who"] == ADMIN
    no_why = admin.post("/api/v1/requesters/req@clinic.test/grants", json={"answers": 3})
    assert no_why.status_code == 422 and "why" in no_why.json()["error"]


def test_openapi_describes_the_api(console):
    spec = console.client().get("/api/v1/openapi.json").json()
    assert spec["info"]["title"] == "CaseConsultant API"
    for path in ("/cases", "/cases/{case_id}", "/cases/{case_id}/approve", "/cases/{case_id}/reject",
                 "/requesters/{email}", "/requesters/{email}/plan", "/codes/{code}", "/codes/search"):
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_codes_come_from_the_knowledge_base(console, api):
    found = api.get("/api/v1/codes/search", params={"q": "type 2 diabetes with diabetic chronic kidney disease",
                                                    "system": "ICD-10-CM"})
    assert found.status_code == 200, found.text
    assert "E11.22" in [hit["code"] for hit in found.json()]
    shown = api.get("/api/v1/codes/e11.22")
    assert shown.status_code == 200 and shown.json()["code"] == "E11.22"
    assert api.get("/api/v1/codes/ZZZ99").status_code == 404


def test_an_approval_from_a_stale_read_is_refused_with_who_saved(console, api):
    from consultant.review import actions

    case_id = console.case()
    version = api.get(f"/api/v1/cases/{case_id}").json()["draft"]["version"]
    actions.edit_draft(console.factory, case_id, "A colleague's edit.", by=ADMIN)
    refused = api.post(f"/api/v1/cases/{case_id}/approve",
                       json={"text": "Mine.", "expected_version": version})
    assert refused.status_code == 409 and ADMIN in refused.json()["error"]
    assert console.dispatched == []
    fresh = api.get(f"/api/v1/cases/{case_id}").json()["draft"]["version"]
    assert api.post(f"/api/v1/cases/{case_id}/approve",
                    json={"text": "Mine.", "expected_version": fresh}).status_code == 200


def test_an_out_of_range_case_id_is_a_json_404_or_422(api):
    response = api.get("/api/v1/cases/99999999999999999999")
    assert response.status_code in (404, 422) and "error" in response.json()
