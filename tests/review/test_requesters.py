"""The console's requesters page: balances with organisation and renewal, grants for admins only."""

from __future__ import annotations

from sqlalchemy import select

from consultant.models import QuotaEntry
from consultant.quota import admin as quota_admin
from tests.review.conftest import ADMIN
from tests.review.test_case_actions import post


def test_grants_are_for_admins_and_land_in_the_ledger(console):
    console.settings.quota.plans = {"practice": {"kind": "monthly", "answers": 4},
                                    "pack10": {"kind": "topup", "answers": 10}}
    quota_admin.add_org(console.factory, console.settings, "Lakeside", "practice",
                        domains=["lakeside.test"], members=[], member_cap=None, by=ADMIN)
    console.case(sender="held@clinic.test")
    held = console.case(sender="held@clinic.test", subject="A second question on the guest plan")
    console.case(sender="ann@lakeside.test", subject="An organisation member's question")

    consultant = console.logged_in()
    page = consultant.get("/requesters").text
    assert "Lakeside" in page and "monthly" in page and "Grant answers" not in page
    refused = post(consultant, "/requesters/grant", email="held@clinic.test", answers="3",
                   why="goodwill")
    assert refused.status_code == 403

    admin = console.logged_in(ADMIN)
    page = admin.get("/requesters").text
    assert "Grant answers" in page and "<option>pack10</option>" in page
    done = post(admin, "/requesters/grant", email="held@clinic.test", answers="2",
                why="goodwill after the outage")
    assert done.status_code == 303
    [effects] = console.dispatched
    assert effects.draft_case_ids == [held]  # the held case can now be answered
    assert "granted 2 to held@clinic.test" in admin.get("/requesters?q=held").text
    post(admin, "/requesters/grant", email="held@clinic.test", pack="pack10", why="invoice 7")
    no_why = post(admin, "/requesters/grant", email="held@clinic.test", answers="1", why="")
    assert no_why.status_code == 303 and "say why" in admin.get("/requesters").text
    with console.factory() as session:
        grants = session.execute(select(QuotaEntry.actor, QuotaEntry.delta, QuotaEntry.reason)
                                 .where(QuotaEntry.kind == "grant", QuotaEntry.actor == ADMIN,
                                        QuotaEntry.account.like("r:%"))
                                 .order_by(QuotaEntry.id)).all()
    assert [tuple(g) for g in grants] == [(ADMIN, 2, "goodwill after the outage"),
                                         (ADMIN, 10, "top-up pack10: invoice 7")]
