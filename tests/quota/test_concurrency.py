"""Race-free charging on PostgreSQL: many consultants approving cases of one requester (or one
organisation) at once, and several workers sending, charge exactly what the balance allows.

The counts are printed (run with ``-s`` to see them)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from consultant.models import Case, Draft, Outbox, QuotaEntry
from consultant.outbox.send import send_one
from consultant.outbox.transport import SmtpTransport
from consultant.quota import admin, ledger
from consultant.review.actions import ActionError, approve

APPROVERS = 12
SENDERS = 4


def drafted_cases(factory, settings, emails: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    """Cases awaiting review with an answer draft, one per address (repeat an address for more)."""
    ids = []
    with factory() as s, s.begin():
        for n, email in enumerate(emails):
            requester = ledger.get_or_create_requester(s, settings.quota, email)
            case = Case(requester_id=requester.id, subject=f"question {n}", first_mail_id=n + 1,
                        status="awaiting_review", rule_hits=[], codes=[], findings=[], facts={},
                        question_types=[], flags=[])
            s.add(case)
            s.flush()
            s.add(Draft(case_id=case.id, version=1, template="manual", text=f"Answer {n}.\n",
                        author="machine", kind="answer"))
            ids.append(case.id)
    return ids


def race(factory, settings, case_ids: list[int]) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Approve every case from its own thread, all released at once."""
    barrier = threading.Barrier(len(case_ids))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def one(case_id: int) -> None:
        barrier.wait()
        try:
            approve(factory, settings, case_id, text=None, by=f"consultant{case_id}@cc.test")
            result = "approved"
        except ActionError as exc:
            result = "held" if "held" in str(exc) else f"error: {exc}"
        with lock:
            outcomes[result] += 1

    threads = [threading.Thread(target=one, args=(cid,)) for cid in case_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def send_all(factory, settings, sink) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Several workers each try to send every queued message at the same time."""
    settings.smtp_out.maildir = ""
    settings.smtp_out.host, settings.smtp_out.port = sink.host, sink.port
    with factory() as s:
        ids = list(s.execute(select(Outbox.id).order_by(Outbox.id)).scalars())
    barrier = threading.Barrier(SENDERS)
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def worker() -> None:
        transport = SmtpTransport(settings.smtp_out)
        barrier.wait()
        try:
            for outbox_id in ids:
                status = send_one(factory, settings, outbox_id, transport)
                with lock:
                    results[status] += 1
        finally:
            transport.close()

    threads = [threading.Thread(target=worker) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def counts(factory) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with factory() as s:
        return {
            "charges": s.execute(select(func.count(QuotaEntry.id))
                                 .where(QuotaEntry.kind == "charge")).scalar_one(),
            "answers_queued": s.execute(select(func.count(Outbox.id))
                                        .where(Outbox.kind == "answer")).scalar_one(),
            "notices_queued": s.execute(select(func.count(Outbox.id))
                                        .where(Outbox.kind == "quota_notice")).scalar_one(),
            "held_cases": s.execute(select(func.count(Case.id))
                                    .where(Case.status == "held_quota")).scalar_one(),
        }


def test_parallel_approvals_of_a_guest_with_one_answer_charge_exactly_once(factory, settings,
                                                                          smtp_sink, capsys):
    case_ids = drafted_cases(factory, settings, ["guest@clinic.test"] * APPROVERS)
    outcomes = race(factory, settings, case_ids)
    sent = send_all(factory, settings, smtp_sink)
    figures = counts(factory)
    delivered = Counter(m["raw"].split(b"Auto-Submitted: auto-replied")[0] is m["raw"]
                        for m in smtp_sink.messages)
    with capsys.disabled():
        print(f"\n[personal, {settings.database.url.split(':')[0]}] {APPROVERS} parallel approvals: {dict(outcomes)}; ledger/outbox: "
              f"{figures}; {SENDERS} parallel senders: {dict(sent)}; delivered: "
              f"{delivered[True]} answer(s), {delivered[False]} notice(s)")
    assert outcomes == Counter(approved=1, held=APPROVERS - 1)
    assert figures == {"charges": 1, "answers_queued": 1, "notices_queued": 1,
                       "held_cases": APPROVERS - 1}
    assert (delivered[True], delivered[False]) == (1, 1)  # each message went out exactly once
    with factory() as s:
        requester = s.execute(select(Case)).scalars().first().requester  # type: ignore[union-attr]
        assert ledger.status(s, settings.quota, requester).answers_remaining == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_parallel_approvals_by_members_share_the_organisation_balance(factory, settings, smtp_sink,
                                                                      capsys):
    settings.quota.plans = {"practice": {"kind": "monthly", "answers": 3}}
    admin.add_org(factory, settings, "Lakeside", "practice", domains=["lakeside.test"], members=[],
                  member_cap=None, by="ops@cc.test")
    emails = [f"coder{n % 6}@lakeside.test" for n in range(APPROVERS)]
    case_ids = drafted_cases(factory, settings, emails)
    outcomes = race(factory, settings, case_ids)
    sent = send_all(factory, settings, smtp_sink)
    figures = counts(factory)
    with capsys.disabled():
        print(f"\n[organisation, 3 answers, 6 members] {APPROVERS} parallel approvals: "
              f"{dict(outcomes)}; ledger/outbox: {figures}; {SENDERS} parallel senders: {dict(sent)}")
    assert outcomes == Counter(approved=3, held=APPROVERS - 3)
    assert figures["charges"] == 3 and figures["answers_queued"] == 3
    answers = [m for m in smtp_sink.messages if b"Auto-Submitted: auto-replied" not in m["raw"]]
    assert len(answers) == 3
    with factory() as s:
        org_charges = s.execute(select(func.count(QuotaEntry.id)).where(
            QuotaEntry.kind == "charge", QuotaEntry.account.like("o:%"))).scalar_one()
        assert org_charges == 3
