"""Ledger arithmetic on a controllable clock: grants, charges, refunds and expiries; monthly resets
across month ends, leap days and time zones; lifetime plans never granted twice.  On SQLite and
PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from consultant.models import Case, QuotaEntry, Requester
from consultant.quota import charging, ledger
from consultant.quota.charging import LedgerError, OverQuota

_mail_ids = itertools.count(1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def quota(settings):  # type: ignore[no-untyped-def]
    settings.quota.plans = {
        "pro": {"kind": "monthly", "answers": 3, "reset_day": 1},
        "rollover": {"kind": "monthly", "answers": 2, "reset_day": 31, "carry_over": True},
        "leap": {"kind": "monthly", "answers": 1, "reset_day": 29},
        "pack10": {"kind": "topup", "answers": 10},
        "gold": 50,
    }
    return settings.quota


def case_for(s, requester: Requester) -> int:  # type: ignore[no-untyped-def]
    case = Case(requester_id=requester.id, subject="q", first_mail_id=next(_mail_ids) + 10_000,
                status="awaiting_review", rule_hits=[], codes=[], findings=[], facts={},
                question_types=[], flags=[])
    s.add(case)
    s.flush()
    return case.id


def new_requester(s, quota, email: str, plan: str, at: datetime) -> Requester:  # type: ignore[no-untyped-def]
    requester = ledger.get_or_create_requester(s, quota, email, now=at)
    if plan != "guest":
        charging.change_plan(s, quota, ledger.requester_account(requester), plan, by="ops@cc.test",
                             now=at)
    return requester


def charge(s, quota, requester, at: datetime) -> charging.Charge:  # type: ignore[no-untyped-def]
    return charging.charge_answer(s, quota, requester, case_id=case_for(s, requester),
                                  by="jane@cc.test", now=at)


def remaining(s, quota, requester, at: datetime) -> int:  # type: ignore[no-untyped-def]
    return ledger.status(s, quota, requester, now=at).answers_remaining


def kinds(s, requester) -> list[tuple[str, int, str]]:  # type: ignore[no-untyped-def]
    return [(e.kind, e.delta, e.at.date().isoformat()) for e in s.execute(
        select(QuotaEntry).where(QuotaEntry.account == f"r:{requester.id}")
        .order_by(QuotaEntry.at, QuotaEntry.id)).scalars()]


def test_guest_and_lifetime_plans_grant_up_to_their_total_once(factory, quota):
    with factory() as s, s.begin():
        r = new_requester(s, quota, " Coder@Clinic.Test ", "guest", utc(2026, 1, 5))
        assert r.email == "coder@clinic.test"
        assert ledger.get_or_create_requester(s, quota, "coder@clinic.test").id == r.id
        assert remaining(s, quota, r, utc(2026, 1, 5)) == 1
        charge(s, quota, r, utc(2026, 1, 6))
        with pytest.raises(OverQuota, match="no answers left on the guest plan"):
            charge(s, quota, r, utc(2026, 1, 7))
        account = ledger.requester_account(r)
        charging.change_plan(s, quota, account, "registered", by="coder@clinic.test",
                             now=utc(2026, 1, 8))
        # Back and forth between plans never grants twice: registered tops up to 6 in all.
        for plan in ("guest", "registered", "gold", "registered"):
            charging.change_plan(s, quota, ledger.requester_account(r), plan, by="ops",
                                 now=utc(2026, 1, 9))
        status = ledger.status(s, quota, r, now=utc(2026, 1, 10))
        assert (status.answers_used, status.answers_remaining, status.answers_allowed) == (1, 50, 51)
        assert [k for k in kinds(s, r) if k[0] == "grant"] == [
            ("grant", 1, "2026-01-05"), ("grant", 5, "2026-01-08"), ("grant", 45, "2026-01-09")]


def test_monthly_allowance_resets_and_unused_answers_expire(factory, quota):
    with factory() as s, s.begin():
        r = new_requester(s, quota, "m@clinic.test", "pro", utc(2026, 1, 15, 10))
        # guest answer (lasting) + 3 for January (monthly)
        assert remaining(s, quota, r, utc(2026, 1, 15, 11)) == 4
        first = charge(s, quota, r, utc(2026, 1, 20))
        assert first.entry.bucket == "monthly"  # the part that would expire goes first
        charge(s, quota, r, utc(2026, 1, 21))
        end_of_january = ledger.status(s, quota, r, now=utc(2026, 1, 31, 23, 59, 59))
        assert (end_of_january.answers_remaining, end_of_january.monthly_remaining) == (2, 1)
        assert end_of_january.renews_on == "2026-02-01" and end_of_january.answers_used == 2
        # At midnight the unused January answer expires and February's three arrive; nothing
        # is written until the account changes, but the balance shows it at once.
        february = ledger.status(s, quota, r, now=utc(2026, 2, 1))
        assert (february.answers_remaining, february.monthly_remaining, february.answers_used) == (4, 3, 0)
        assert ("expire", -1, "2026-02-01") not in kinds(s, r)
        # Three quiet months later: one charge settles every reset in between, in order.
        charge(s, quota, r, utc(2026, 5, 3))
        assert kinds(s, r) == [
            ("grant", 1, "2026-01-15"), ("grant", 3, "2026-01-15"), ("charge", -1, "2026-01-20"),
            ("charge", -1, "2026-01-21"),
            ("expire", -1, "2026-02-01"), ("grant", 3, "2026-02-01"),
            ("expire", -3, "2026-03-01"), ("grant", 3, "2026-03-01"),
            ("expire", -3, "2026-04-01"), ("grant", 3, "2026-04-01"),
            ("expire", -3, "2026-05-01"), ("grant", 3, "2026-05-01"),
            ("charge", -1, "2026-05-03")]
        assert remaining(s, quota, r, utc(2026, 5, 3)) == 3  # 2 monthly + the guest answer
        # Settling again writes nothing new (each period's entries are keyed).
        before = len(kinds(s, r))
        charging.settle(s, quota, ledger.requester_account(r), utc(2026, 5, 4))
        assert len(kinds(s, r)) == before
        # The guest answer is used only once the month's are gone, and it never expires.
        for day in (5, 6, 7):
            charge(s, quota, r, utc(2026, 5, day))
        with pytest.raises(OverQuota):
            charge(s, quota, r, utc(2026, 5, 8))
        assert remaining(s, quota, r, utc(2026, 6, 1)) == 3


def test_carry_over_keeps_unused_answers_and_reset_day_31_follows_short_months(factory, quota):
    with factory() as s, s.begin():
        r = new_requester(s, quota, "roll@clinic.test", "rollover", utc(2026, 1, 10))
        charge(s, quota, r, utc(2026, 1, 11))
        # Resets on 31 January, 28 February, 31 March: +2 each, nothing expires.
        status = ledger.status(s, quota, r, now=utc(2026, 3, 31))
        assert (status.monthly_remaining, status.renews_on) == (1 + 2 + 2 + 2, "2026-04-30")
        assert status.answers_used == 0  # none this period
        charge(s, quota, r, utc(2026, 3, 31, 12))
        assert not [k for k in kinds(s, r) if k[0] == "expire"]


def test_leap_day_reset(factory, quota):
    with factory() as s, s.begin():
        r = new_requester(s, quota, "leap@clinic.test", "leap", utc(2028, 1, 30))
        charge(s, quota, r, utc(2028, 2, 1))  # January's monthly answer
        assert ledger.status(s, quota, r, now=utc(2028, 2, 28, 23)).renews_on == "2028-02-29"
        assert ledger.status(s, quota, r, now=utc(2028, 2, 29)).monthly_remaining == 1
        assert ledger.status(s, quota, r, now=utc(2029, 2, 28)).renews_on == "2029-03-29"


def test_resets_follow_the_configured_time_zone(factory, quota):
    quota.timezone = "America/New_York"
    with factory() as s, s.begin():
        r = new_requester(s, quota, "ny@clinic.test", "pro", utc(2026, 1, 10, 15))
        for hour in (0, 1, 2):  # 31 January, 19:00-21:00 in New York
            charge(s, quota, r, utc(2026, 2, 1, hour))
        late_january = ledger.status(s, quota, r, now=utc(2026, 2, 1, 4, 59))
        assert (late_january.monthly_remaining, late_january.answers_used) == (0, 3)
        assert late_january.renews_on == "2026-02-01"
        february = ledger.status(s, quota, r, now=utc(2026, 2, 1, 5))  # midnight in New York
        assert (february.monthly_remaining, february.answers_used) == (3, 0)
        assert february.renews_on == "2026-03-01"


def test_top_ups_never_expire_and_refunds_go_back_where_they_came_from(factory, quota):
    with factory() as s, s.begin():
        r = new_requester(s, quota, "top@clinic.test", "pro", utc(2026, 3, 1))
        account = ledger.requester_account(r)
        pack = charging.grant_pack(s, quota, account, "pack10", by="ops@cc.test",
                                   why="invoice 42", now=utc(2026, 3, 2))
        assert (pack.delta, pack.bucket, pack.actor, pack.reason) == (
            10, "lasting", "ops@cc.test", "top-up pack10: invoice 42")
        charges = [charge(s, quota, r, utc(2026, 3, 3)) for _ in range(5)]
        assert [c.entry.bucket for c in charges] == ["monthly"] * 3 + ["lasting"] * 2
        assert charges[-1].after.answers_remaining == 1 + 10 - 2
        # A refund of the first (monthly) charge goes back to the monthly bucket, once.
        refund = charging.refund(s, quota, charges[0].entry, by="ops@cc.test", why="wrong answer",
                                 now=utc(2026, 3, 4))
        assert refund is not None and refund.bucket == "monthly" and refund.delta == 1
        assert charging.refund(s, quota, charges[0].entry, by="ops", why="again") is None
        april = ledger.status(s, quota, r, now=utc(2026, 4, 1))
        assert (april.monthly_remaining, april.lasting_remaining) == (3, 9)
        with pytest.raises(LedgerError, match="not a top-up pack"):
            charging.grant_pack(s, quota, account, "pro", by="ops", why="")
        with pytest.raises(LedgerError, match="say why"):
            charging.grant(s, quota, account, 2, by="ops", why=" ")
        with pytest.raises(LedgerError, match="top-up pack"):
            charging.change_plan(s, quota, account, "pack10", by="ops")


def test_leaving_a_monthly_plan_for_a_lifetime_one_expires_the_month(factory, quota):
    with factory() as s, s.begin():
        r = new_requester(s, quota, "leave@clinic.test", "pro", utc(2026, 3, 1))
        charging.change_plan(s, quota, ledger.requester_account(r), "registered", by="ops",
                             now=utc(2026, 3, 10))
        status = ledger.status(s, quota, r, now=utc(2026, 3, 10) + timedelta(seconds=1))
        assert (status.monthly_remaining, status.lasting_remaining) == (0, 6)
        assert ledger.status(s, quota, r, now=utc(2026, 7, 1)).answers_remaining == 6


def test_a_requester_is_new_only_in_the_transaction_that_made_it(factory, settings):
    from consultant.quota.ledger import get_or_create_requester, is_new

    with factory() as s:
        with s.begin():
            ann = get_or_create_requester(s, settings.quota, "ann@clinic.test")
            assert is_new(s, ann)
        with s.begin():  # the same session, a later transaction
            again = get_or_create_requester(s, settings.quota, "ann@clinic.test")
            assert again.id == ann.id and not is_new(s, again)
