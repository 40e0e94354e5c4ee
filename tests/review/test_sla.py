"""SLA targets per plan: due times, the breach list, the overdue gauge; and the draft-latency
summary measured from arrival to the first draft."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from consultant.models import Case, Draft, InboundMail, Requester, utcnow
from consultant.processing import draft_case
from consultant.quota import admin as quota_admin
from consultant.review import actions, latency, sla
from consultant.settings import ConfigError, load_settings
from tests.review.conftest import CONSULTANT, backdate


def metric(text: str, name: str) -> float:
    """The one unlabelled sample ``name`` of a /metrics answer (prometheus_client's parser)."""
    [value] = [sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name and not sample.labels]
    return value


def test_due_times_follow_the_plan_and_the_breach_list_shows_them(console):
    console.settings.sla.plans = {"guest": 8.0, "registered": 2.0}
    late = console.case(sender="late@clinic.test", subject="Registered, 3 h old")
    soon = console.case(sender="soon@clinic.test", subject="Guest, 7 h old")
    fine = console.case(sender="fine@clinic.test", subject="Guest, 1 h old")
    with console.factory() as session, session.begin():
        session.execute(update(Requester).where(Requester.email == "late@clinic.test")
                        .values(plan="registered"))
    for case_id, hours in ((late, 3), (soon, 7), (fine, 1)):
        backdate(console.factory, case_id, hours)
    with console.factory() as session:
        dues = sla.dues_for(session, console.settings, [late, soon, fine])
        now = utcnow()
        assert dues[late].plan == "registered" and dues[late].hours == 2.0
        assert dues[late].state(now) == sla.OVERDUE
        assert dues[soon].state(now) == sla.DUE_SOON  # the last quarter of 8 h
        assert dues[fine].state(now) == sla.ON_TIME
        assert sla.overdue_count(session, console.settings, now) == 1
    page = console.logged_in().get("/sla").text
    overdue = page[page.index('id="overdue"'):page.index('id="due-soon"')]
    due_soon = page[page.index('id="due-soon"'):]
    assert f'data-case="{late}"' in overdue and "late" in overdue
    assert f'data-case="{soon}"' in due_soon and f'data-case="{soon}"' not in overdue
    assert f'data-case="{fine}"' not in page
    assert "registered 2 h" in page
    assert console.client().get("/sla", follow_redirects=False).status_code == 303  # login first


def test_waiting_on_the_requester_stops_the_clock_and_the_gauge_counts_open_late_cases(console):
    asked = console.case(sender="a@clinic.test", subject="Asked a question back")
    other = console.case(sender="b@clinic.test", subject="Still ours")
    for case_id in (asked, other):
        backdate(console.factory, case_id, 10)  # the default target is 4 h
    assert metric(console.client().get("/metrics").text, "caseconsultant_sla_overdue_cases") == 2
    actions.request_info(console.factory, console.settings, asked,
                         text="Which date of service?", by=CONSULTANT)
    assert metric(console.client().get("/metrics").text, "caseconsultant_sla_overdue_cases") == 1
    # The reply brings the case back with a fresh clock from its new draft.
    console.case(sender="a@clinic.test", subject=f"Re: [CC-{asked}] Asked a question back",
                 body="DOS 2026-05-01.")
    with console.factory() as session:
        assert session.get(Case, asked).status in sla.ON_THE_CLOCK
        due = sla.dues_for(session, console.settings, [asked])[asked]
        assert due.state(utcnow()) == sla.ON_TIME and utcnow() - due.started < timedelta(minutes=5)
        assert sla.overdue_count(session, console.settings) == 1


def test_a_target_for_an_unknown_plan_is_refused_at_start(tmp_path: Path):
    config = tmp_path / "cc.toml"
    config.write_text('[sla]\nplans = {gest = 4}\n')
    with pytest.raises(ConfigError, match=r"sla\.plans: unknown plan 'gest'"):
        load_settings(config, environ={})
    config.write_text('[quota.plans]\npro = 100\n[sla]\ndefault_hours = 6\nplans = {pro = 2}\n')
    loaded = load_settings(config, environ={}).sla
    assert loaded.hours_for("pro") == 2 and loaded.hours_for("guest") == 6
    config.write_text('[sla]\nplans = {guest = 0}\n')
    with pytest.raises(ConfigError, match=r"sla\.plans\.guest: Input should be greater than 0"):
        load_settings(config, environ={})


def test_draft_latency_runs_from_arrival_to_the_first_draft_without_waits(console):
    quick = console.case(sender="quick@clinic.test")
    with console.factory() as session, session.begin():
        case = session.get(Case, quick)
        first = session.execute(select(Draft).where(Draft.case_id == quick)).scalar_one()
        # The mail waited 90 s in the intake queue before its case was drafted.
        session.execute(update(InboundMail).where(InboundMail.id == case.first_mail_id)
                        .values(received_at=first.created_at - timedelta(seconds=90)))
        # A re-draft a day later (after the requester answered a question) is not the latency.
        session.add(Draft(case_id=quick, version=2, template="x", text="again", author="machine",
                          created_at=first.created_at + timedelta(days=1)))
        case.drafted_at = first.created_at + timedelta(days=1)
    # A guest's second question is held for quota until an answer is granted; that wait is
    # the requester's, so the case is left out.
    console.case(sender="held@clinic.test", subject="one")
    held = console.case(sender="held@clinic.test", subject="two")
    with console.factory() as session, session.begin():
        assert session.get(Case, held).status == "held_quota"
        session.execute(update(InboundMail).where(InboundMail.case_id == held)
                        .values(received_at=utcnow() - timedelta(days=3)))
    quota_admin.grant(console.factory, console.settings, "held@clinic.test", answers=1, pack=None,
                      why="test", by="root@cc.test")
    draft_case(console.factory, console.settings, held)
    with console.factory() as session:
        assert session.get(Case, held).status == "awaiting_review"
        values = latency.draft_latencies(session, 100)
    assert len(values) == 2  # quick and the held requester's first case
    assert 90 <= values[-1] < 120 and values[0] < 60
    body = console.client().get("/metrics").text
    assert metric(body, "caseconsultant_draft_latency_seconds_count") == 2
    assert 90 <= metric(body, "caseconsultant_draft_latency_seconds_sum") < 180


def test_the_breach_list_shows_the_most_urgent_and_counts_them_all(console, monkeypatch):
    from consultant.review.web import pages_sla

    monkeypatch.setattr(pages_sla, "SHOWN", 1)
    older, newer = console.case(sender="o@clinic.test"), console.case(sender="n@clinic.test")
    backdate(console.factory, older, 9)
    backdate(console.factory, newer, 6)
    page = console.logged_in().get("/sla").text
    assert "2 overdue" in page and "the 1 most urgent of 2" in page
    assert f'data-case="{older}"' in page and f'data-case="{newer}"' not in page
