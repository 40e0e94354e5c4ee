"""Plans from config and the calendar of monthly plans: when a period starts and ends.

A monthly plan resets at midnight of ``reset_day`` in ``[quota] timezone``.  A month shorter
than ``reset_day`` resets on its last day instead (``reset_day = 31`` is 28 or 29 February, 30
April), so every month has exactly one reset.  All arithmetic is done on local dates and the
result converted to UTC, so a reset at midnight in New York is 05:00 or 04:00 UTC depending on
daylight saving time, as a requester there would expect.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from consultant.settings import PlanSettings, QuotaSettings


class UnknownPlan(ValueError):
    """No plan of that name in the configuration; the message lists the known ones."""


def plan_names(quota: QuotaSettings, *, kinds: tuple[str, ...] = ("lifetime", "monthly")) -> list[str]:
    """Plans a requester or organisation can be on (top-ups are granted, not held)."""
    names = ["guest", "registered", *sorted(quota.plans)]
    return [n for n in names if quota.plan(n).kind in kinds]


def get_plan(quota: QuotaSettings, name: str) -> PlanSettings:
    try:
        return quota.plan(name)
    except KeyError:
        known = ", ".join(["guest", "registered", *sorted(quota.plans)])
        raise UnknownPlan(f"unknown plan {name!r} (known: {known})") from None


def allowance(quota: QuotaSettings, name: str) -> int:
    """Answers a plan gives: in all (lifetime, guest answer included) or per period (monthly)."""
    return get_plan(quota, name).answers


def _reset_on(year: int, month: int, reset_day: int) -> date:
    return date(year, month, min(reset_day, calendar.monthrange(year, month)[1]))


def _instant(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=tz).astimezone(UTC)


def _month_before(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def period_start(moment: datetime, reset_day: int, tz: ZoneInfo) -> datetime:
    """The last reset at or before ``moment`` (an aware datetime), in UTC."""
    local = moment.astimezone(tz)
    this_month = _instant(_reset_on(local.year, local.month, reset_day), tz)
    if this_month <= moment:
        return this_month
    return _instant(_reset_on(*_month_before(local.year, local.month), reset_day), tz)


def next_reset(moment: datetime, reset_day: int, tz: ZoneInfo) -> datetime:
    """The first reset strictly after ``moment``, in UTC."""
    local = period_start(moment, reset_day, tz).astimezone(tz)
    return _instant(_reset_on(*_month_after(local.year, local.month), reset_day), tz)


def resets_between(since: datetime, until: datetime, reset_day: int, tz: ZoneInfo) -> list[datetime]:
    """Every reset ``r`` with ``since < r <= until``, oldest first."""
    out: list[datetime] = []
    moment = next_reset(since, reset_day, tz)
    while moment <= until:
        out.append(moment)
        moment = next_reset(moment, reset_day, tz)
    return out


def local_date(moment: datetime, quota: QuotaSettings) -> date:
    return moment.astimezone(ZoneInfo(quota.timezone)).date()


def zone(quota: QuotaSettings) -> ZoneInfo:
    return ZoneInfo(quota.timezone)
