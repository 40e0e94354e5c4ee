"""The calendar of monthly plans: resets across month ends, leap days and time zones; plan config."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from consultant.quota.plans import (
    UnknownPlan,
    allowance,
    next_reset,
    period_start,
    plan_names,
    resets_between,
)
from consultant.settings import ConfigError, QuotaSettings, load_settings

UTCZ = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_reset_day_beyond_the_month_end_resets_on_its_last_day():
    # reset_day 31: 31 January, then 28 February (2026), 31 March, 30 April.
    assert resets_between(utc(2026, 1, 15), utc(2026, 5, 1), 31, UTCZ) == [
        utc(2026, 1, 31), utc(2026, 2, 28), utc(2026, 3, 31), utc(2026, 4, 30)]
    assert period_start(utc(2026, 3, 30, 23, 59), 31, UTCZ) == utc(2026, 2, 28)
    assert next_reset(utc(2026, 2, 28), 31, UTCZ) == utc(2026, 3, 31)  # strictly after


def test_leap_day_resets():
    assert resets_between(utc(2028, 2, 1), utc(2028, 3, 30), 29, UTCZ) == [
        utc(2028, 2, 29), utc(2028, 3, 29)]
    assert resets_between(utc(2027, 2, 1), utc(2027, 3, 1), 29, UTCZ) == [utc(2027, 2, 28)]
    assert period_start(utc(2028, 2, 29, 0, 0), 30, UTCZ) == utc(2028, 2, 29)
    assert next_reset(utc(2028, 1, 31), 31, UTCZ) == utc(2028, 2, 29)


def test_resets_are_at_local_midnight_including_daylight_saving_time():
    # Midnight in New York is 05:00 UTC in winter and 04:00 UTC in summer (DST from 8 March 2026).
    assert resets_between(utc(2026, 2, 15), utc(2026, 4, 15), 1, NY) == [
        utc(2026, 3, 1, 5), utc(2026, 4, 1, 4)]
    # 03:00 UTC on 1 February is still 31 January in New York: the January period.
    assert period_start(utc(2026, 2, 1, 3), 1, NY) == utc(2026, 1, 1, 5)
    assert period_start(utc(2026, 2, 1, 5), 1, NY) == utc(2026, 2, 1, 5)
    # Across the year end.
    assert next_reset(utc(2026, 12, 15), 1, NY) == utc(2027, 1, 1, 5)


def test_plans_from_config_and_their_errors(tmp_path):
    quota = QuotaSettings(guest=1, registered=5, plans={
        "pro": 100,
        "team": {"kind": "monthly", "answers": 20, "reset_day": 15, "carry_over": True},
        "pack10": {"kind": "topup", "answers": 10}})
    assert allowance(quota, "guest") == 1
    assert allowance(quota, "registered") == 6  # the guest answer plus five more
    assert allowance(quota, "pro") == 101
    team = quota.plan("team")
    assert (team.kind, team.answers, team.reset_day, team.carry_over) == ("monthly", 20, 15, True)
    assert plan_names(quota) == ["guest", "registered", "pro", "team"]
    assert plan_names(quota, kinds=("topup",)) == ["pack10"]
    with pytest.raises(UnknownPlan, match="known: guest, registered, pack10, pro, team"):
        allowance(quota, "gold")
    # A mistake in the file fails at load, naming the plan and its key.
    config = tmp_path / "cc.toml"
    for bad, message in [('{kind = "yearly", answers = 1}', "quota.plans.x.kind: Input should be "
                          "'lifetime', 'monthly' or 'topup'"),
                         ('{kind = "monthly", answers = 1, reset_day = 0}',
                          "quota.plans.x.reset_day: Input should be greater than or equal to 1"),
                         ('{kind = "topup", answers = 1, carry_over = true}',
                          "quota.plans.x: .*monthly plans only"),
                         ('{kind = "monthly", answers = 1, every = 2}', "quota.plans.x.every: unknown key"),
                         ('{kind = "monthly"}', "quota.plans.x.answers: Field required"),
                         ("-3", "quota.plans.x.answers: Input should be greater than or equal to 0")]:
        config.write_text(f"[quota.plans]\nx = {bad}\n")
        with pytest.raises(ConfigError, match=message):
            load_settings(config, environ={})
    config.write_text('[quota]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match="quota.timezone: .*unknown time zone 'Mars/Olympus'"):
        load_settings(config, environ={})
