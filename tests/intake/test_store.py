"""Storing raw mail: once per distinct bytes, a whole batch in one transaction."""

from __future__ import annotations

from sqlalchemy import event, func, select

from consultant.intake.store import Location, store_many, store_raw
from consultant.models import InboundMail
from tests.conftest import question_mail


def test_a_batch_stores_each_distinct_mail_once_in_one_commit(factory):  # type: ignore[no-untyped-def]
    a, b, c = (question_mail(subject=f"Question {i}") for i in range(3))
    earlier = store_raw(factory, c, Location("cli"))
    commits = []

    def count(conn):  # type: ignore[no-untyped-def]
        commits.append(conn)

    engine = factory.kw["bind"]
    event.listen(engine, "commit", count)
    try:
        where = Location("imap", "box", "INBOX", 7, 1)
        got = store_many(factory, [(a, where), (b, where), (a, where), (c, where)])
    finally:
        event.remove(engine, "commit", count)
    assert len(commits) == 1
    assert [s.created for s in got] == [True, True, False, False]
    assert got[0].mail_id == got[2].mail_id != got[1].mail_id
    assert got[3].mail_id == earlier.mail_id
    assert all(s.needs_processing for s in got)
    with factory() as s:
        assert s.execute(select(func.count(InboundMail.id))).scalar_one() == 3
        # The mail stored earlier from the CLI keeps its source; bytes are never stored twice.
        assert s.get(InboundMail, earlier.mail_id).source == "cli"
        assert s.get(InboundMail, got[0].mail_id).raw == a


def test_a_decided_mail_offered_again_needs_no_processing(factory):  # type: ignore[no-untyped-def]
    raw = question_mail()
    first = store_raw(factory, raw, Location("cli"))
    with factory() as s:
        s.get(InboundMail, first.mail_id).disposition = "case"
        s.commit()
    [again] = store_many(factory, [(raw, Location("cli"))])
    assert (again.mail_id, again.created, again.needs_processing) == (first.mail_id, False, False)
