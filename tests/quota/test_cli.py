"""``requesters list|show|grant|refund|set-plan`` and ``orgs add|show|members`` through the real
command line, and organisations sharing one balance with a per-member monthly cap."""

from __future__ import annotations

import json

import pytest

from consultant.cli import main as cli
from consultant.models import Case
from consultant.quota import charging, ledger
from consultant.quota.charging import OverQuota
from tests.helpers import write_config


@pytest.fixture
def run(settings, tmp_path, capsys):  # type: ignore[no-untyped-def]
    settings.quota.plans = {"practice": {"kind": "monthly", "answers": 4},
                            "pack10": {"kind": "topup", "answers": 10}, "pro": 100}
    config = write_config(settings, tmp_path / "cc.toml")

    def call(*args: str, status: int = 0):  # type: ignore[no-untyped-def]
        capsys.readouterr()
        assert cli(["--config", str(config), *args]) == status, capsys.readouterr()
        out = capsys.readouterr()
        return json.loads(out.out) if "--json" in args and status == 0 else out.out + out.err

    return call


def answer(factory, settings, email: str) -> charging.Charge:  # type: ignore[no-untyped-def]
    """Charge one answer to ``email`` as an approval would, in its own transaction."""
    with factory() as s, s.begin():
        requester = ledger.get_or_create_requester(s, settings.quota, email)
        case = Case(requester_id=requester.id, subject="q", first_mail_id=abs(hash(email)) % 10**6
                    + len(s.execute(Case.__table__.select()).all()), status="awaiting_review",
                    rule_hits=[], codes=[], findings=[], facts={}, question_types=[], flags=[])
        s.add(case)
        s.flush()
        return charging.charge_answer(s, settings.quota, requester, case_id=case.id, by="c@cc.test")


def test_requesters_grant_refund_set_plan_and_ledger(run, factory, settings):
    assert run("requesters", "set-plan", "Ann@Clinic.test", "registered", "--json")[
        "answers_remaining"] == 6
    charge = answer(factory, settings, "ann@clinic.test")
    granted = run("requesters", "grant", "ann@clinic.test", "3", "--why", "goodwill",
                  "--by", "ops@cc.test", "--json")
    assert granted["granted"]["delta"] == 3 and granted["answers_remaining"] == 8
    assert run("requesters", "grant", "ann@clinic.test", "--pack", "pack10", "--json")[
        "answers_remaining"] == 18
    refunded = run("requesters", "refund", "ann@clinic.test", "--case",
                   str(charge.entry.case_id), "--why", "answer was wrong", "--json")
    assert refunded["refunded"]["why"] == "answer was wrong" and refunded["answers_remaining"] == 19
    again = run("requesters", "refund", "ann@clinic.test", "--case", str(charge.entry.case_id),
                "--why", "twice", status=1)
    assert "refunded already" in again
    shown = run("requesters", "show", "ann@clinic.test", "--json")
    assert [(e["kind"], e["delta"], e["who"]) for e in reversed(shown["ledger"])] == [
        ("grant", 1, "system"), ("grant", 5, "cli"), ("charge", -1, "c@cc.test"),
        ("grant", 3, "ops@cc.test"), ("grant", 10, "cli"), ("refund", 1, "cli")]
    text = run("requesters", "show", "ann@clinic.test")
    assert "plan registered (lifetime): 19 remaining" in text and "top-up pack10" in text
    [listed] = run("requesters", "list", "--json")
    assert listed["email"] == "ann@clinic.test" and listed["answers_remaining"] == 19
    assert "say why" in run("requesters", "grant", "ann@clinic.test", "2", status=1)
    assert "unknown plan 'gold'" in run("requesters", "set-plan", "ann@clinic.test", "gold", status=1)
    assert "top-up pack" in run("requesters", "set-plan", "ann@clinic.test", "pack10", status=1)
    assert "no requester" in run("requesters", "show", "nobody@clinic.test", status=1)


def test_organisation_members_share_one_balance_with_a_member_cap(run, factory, settings):
    org = run("orgs", "add", "Lakeside Clinic", "--plan", "practice", "--domain", "lakeside.test",
              "--member", "Solo@Gmail.test", "--member-cap", "2", "--json")
    assert (org["answers_remaining"], org["domains"], org["member_cap"]) == (4, ["lakeside.test"], 2)
    assert [m["email"] for m in org["members"]] == ["solo@gmail.test"]
    answer(factory, settings, "ann@lakeside.test")
    answer(factory, settings, "solo@gmail.test")
    answer(factory, settings, "ann@lakeside.test")
    # Ann reached the member cap; the organisation still has one answer, which Bob can use.
    with pytest.raises(OverQuota, match="used the 2 answers a member of Lakeside Clinic"):
        answer(factory, settings, "ann@lakeside.test")
    bob = answer(factory, settings, "bob@lakeside.test")
    assert bob.entry.account == f"o:{bob.entry.account[2:]}" and bob.after.answers_remaining == 0
    with pytest.raises(OverQuota, match="organisation Lakeside Clinic has no answers left"):
        answer(factory, settings, "solo@gmail.test")
    shown = run("orgs", "show", "Lakeside Clinic", "--json")
    assert (shown["answers_remaining"], shown["answers_used"]) == (0, 4)
    assert [m["email"] for m in shown["members"]] == [
        "ann@lakeside.test", "bob@lakeside.test", "solo@gmail.test"]
    ann = run("requesters", "show", "ann@lakeside.test", "--json")
    assert (ann["org"], ann["member_used"], ann["member_cap"], ann["answers_remaining"]) == (
        "Lakeside Clinic", 2, 2, 0)
    # A grant to a member's address goes to the organisation's balance; Bob himself can use
    # one more this month (his cap).
    assert run("requesters", "grant", "bob@lakeside.test", "5", "--why", "extra", "--json")[
        "answers_remaining"] == 1
    assert run("orgs", "show", "Lakeside Clinic", "--json")["answers_remaining"] == 5

    # One organisation per address, whichever way it is claimed.
    assert "belongs to organisation 'Lakeside Clinic'" in run(
        "orgs", "add", "Other", "--plan", "pro", "--domain", "lakeside.test", status=1)
    assert "belongs to organisation 'Lakeside Clinic'" in run(
        "orgs", "add", "Third", "--plan", "pro", "--member", "ann@lakeside.test", status=1)
    assert "listed member of another organisation" in run(
        "orgs", "add", "Fourth", "--plan", "pro", "--domain", "gmail.test", status=1)
    assert "exists already" in run("orgs", "add", "Lakeside Clinic", "--plan", "pro", status=1)
    members = run("orgs", "members", "Lakeside Clinic", "--remove", "solo@gmail.test", "--json")
    assert [m["email"] for m in members] == ["ann@lakeside.test", "bob@lakeside.test"]
    assert run("requesters", "show", "solo@gmail.test", "--json")["org"] is None
