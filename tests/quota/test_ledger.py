"""Plans and allowances; usage is the sum of the ledger."""

from __future__ import annotations

import pytest

from consultant.quota import ledger
from consultant.settings import QuotaSettings


def test_allowances_by_plan():
    quota = QuotaSettings(guest=1, registered=5, plans={"pro": 100})
    assert ledger.allowance(quota, "guest") == 1
    assert ledger.allowance(quota, "registered") == 6  # the guest answer plus five more
    assert ledger.allowance(quota, "pro") == 101
    assert ledger.plan_names(quota) == ["guest", "registered", "pro"]
    with pytest.raises(ledger.UnknownPlan, match="known: guest, registered, pro"):
        ledger.allowance(quota, "gold")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_usage_is_charges_minus_refunds(factory, settings):
    with factory() as s, s.begin():
        requester = ledger.get_or_create_requester(s, " Coder@Clinic.Test ")
        assert requester.email == "coder@clinic.test"
        assert ledger.get_or_create_requester(s, "coder@clinic.test").id == requester.id
        ledger.charge(s, requester, case_id=None, outbox_id=None)  # type: ignore[arg-type]
        ledger.charge(s, requester, case_id=None, outbox_id=None)  # type: ignore[arg-type]
        ledger.refund(s, requester, case_id=None, outbox_id=None, reason="delivery_failed")  # type: ignore[arg-type]
        s.flush()
        status = ledger.status(s, settings.quota, requester)
        assert (status.answers_used, status.answers_allowed, status.answers_remaining) == (1, 1, 0)
        requester.plan = "registered"
        assert ledger.status(s, settings.quota, requester).answers_remaining == 5
