"""The audit chain: sealed transparently at commit, and any edit, deletion or reordering found."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update

from consultant.audit.verify import export, prune, verify
from consultant.cli import main
from consultant.db import transaction
from consultant.models import AuditEvent


def write(factory, n: int, action: str = "edited") -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        with transaction(factory) as s:
            # Exactly as the rest of the code writes them: nothing about the chain.
            s.add(AuditEvent(case_id=None, actor=f"c{i}@cc.test", action=action, detail={"i": i}))


def rows(factory):  # type: ignore[no-untyped-def]
    with factory() as s:
        return s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()


def test_events_are_sealed_in_commit_order_and_verify(factory):
    write(factory, 5)
    with transaction(factory) as s:  # several events in one transaction, one flushed early
        s.add(AuditEvent(case_id=None, actor="a", action="approved", detail={}))
        s.flush()
        s.add(AuditEvent(case_id=None, actor="a", action="charged", detail={"n": 1}))
    events = rows(factory)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert events[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    result = verify(factory)
    assert result.ok and result.events == 7 and result.head_hash == events[-1].hash


def test_a_transactions_events_are_inserted_once_already_sealed(factory):
    # Held until commit and inserted with their seals in one statement: no INSERT at each
    # flush followed by an UPDATE at commit.
    from sqlalchemy import event

    writes: list[str] = []

    def note(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.startswith(("INSERT INTO audit", "UPDATE audit")):
            writes.append(statement.split()[0])

    engine = factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", note)
    try:
        with transaction(factory) as s:
            s.add(AuditEvent(case_id=None, actor="a", action="received", detail={"n": 1}))
            s.flush()
            s.add(AuditEvent(case_id=None, actor="a", action="drafted", detail={"n": (2, 3)}))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert writes == ["INSERT"]
    events = rows(factory)
    assert [(e.seq, e.action, e.detail) for e in events] == [
        (1, "received", {"n": 1}), (2, "drafted", {"n": [2, 3]})]
    assert verify(factory).ok


def test_an_event_added_after_the_seal_is_written_not_lost(factory):
    # Something adding an event once the seal has run (a later before_commit listener) is a
    # bug, but a loud one: the event is written unsealed, reported, and sealed by the next
    # commit, as an event written around the chain is.
    from sqlalchemy import event

    def late(session):  # type: ignore[no-untyped-def]
        session.add(AuditEvent(case_id=None, actor="late", action="late", detail={}))

    event.listen(factory, "before_commit", late)  # after the chain's own listener
    try:
        write(factory, 1)
    finally:
        event.remove(factory, "before_commit", late)
    assert {(e.action, e.seq) for e in rows(factory)} == {("edited", 1), ("late", None)}
    assert any("not sealed" in p for p in verify(factory).problems)
    write(factory, 1)
    assert [e.action for e in rows(factory)] == ["edited", "late", "edited"]
    assert verify(factory).ok


def test_the_chain_verifies_in_any_session_time_zone(factory):
    # PostgreSQL returns timestamps in the reading session's zone; the hash is over the instant.
    import pytest
    from sqlalchemy import create_engine

    from consultant.db import make_session_factory

    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps no session time zone")
    write(factory, 3)
    elsewhere = create_engine(engine.url.render_as_string(hide_password=False),
                              connect_args={"options": "-c timezone=America/New_York"})
    try:
        with elsewhere.connect() as conn:
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "America/New_York"
        result = verify(make_session_factory(elsewhere))
    finally:
        elsewhere.dispose()
    assert result.ok and result.events == 3, result.problems


def test_a_savepoint_defers_sealing_to_the_outer_commit(factory):
    """Releasing a savepoint fires before_commit too; the chain is sealed once, at the end."""
    from sqlalchemy import event

    heads: list[str] = []
    engine = factory.kw["bind"]

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "max(audit.seq)" in statement:
            heads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with transaction(factory) as s:
            s.add(AuditEvent(case_id=None, actor="a", action="received", detail={}))
            with s.begin_nested():
                s.add(AuditEvent(case_id=None, actor="a", action="inner", detail={}))
            with s.begin_nested() as rolled_back:
                s.add(AuditEvent(case_id=None, actor="a", action="lost", detail={}))
                s.flush()
                rolled_back.rollback()
            s.add(AuditEvent(case_id=None, actor="a", action="drafted", detail={}))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(heads) == 1  # the chain's head read once: one seal for the transaction
    events = rows(factory)
    assert [(e.seq, e.action) for e in events] == [(1, "received"), (2, "inner"), (3, "drafted")]
    assert verify(factory).ok


def test_a_rolled_back_event_leaves_no_trace(factory):
    write(factory, 2)
    try:
        with transaction(factory) as s:
            s.add(AuditEvent(case_id=None, actor="a", action="x", detail={}))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    write(factory, 1)
    assert [e.seq for e in rows(factory)] == [1, 2, 3] and verify(factory).ok


def test_an_edited_event_is_detected(factory):
    write(factory, 4)
    with transaction(factory) as s:
        s.execute(update(AuditEvent.__table__).where(AuditEvent.seq == 2)
                  .values(detail={"i": 99}))
    result = verify(factory)
    assert not result.ok
    assert any("event 2" in p and "changed" in p for p in result.problems), result.problems


def test_an_edited_actor_with_a_recomputed_hash_still_breaks_the_next_link(factory):
    from consultant.audit.chain import digest

    write(factory, 3)
    with transaction(factory) as s:
        e = s.execute(select(AuditEvent).where(AuditEvent.seq == 2)).scalar_one()
        forged = digest(2, e.prev_hash, e.case_id, "someone-else", e.action, e.detail, e.at)
        s.execute(update(AuditEvent.__table__).where(AuditEvent.seq == 2)
                  .values(actor="someone-else", hash=forged))
    problems = verify(factory).problems
    assert any("event 3" in p and "does not follow" in p for p in problems), problems


def test_a_deleted_event_is_detected(factory):
    write(factory, 4)
    with transaction(factory) as s:
        s.execute(text("DELETE FROM audit WHERE seq = 3"))
    problems = verify(factory).problems
    assert any("events 3..3 are missing" in p for p in problems), problems
    assert any("event 4" in p and "does not follow" in p for p in problems), problems


def test_a_deleted_first_event_is_detected(factory):
    write(factory, 3)
    with transaction(factory) as s:
        s.execute(text("DELETE FROM audit WHERE seq = 1"))
    assert not verify(factory).ok


def test_reordering_is_detected(factory):
    write(factory, 4)
    with transaction(factory) as s:  # swap the positions of events 2 and 3
        s.execute(text("UPDATE audit SET seq = -2 WHERE seq = 2"))
        s.execute(text("UPDATE audit SET seq = 2 WHERE seq = 3"))
        s.execute(text("UPDATE audit SET seq = 3 WHERE seq = -2"))
    problems = verify(factory).problems
    assert any("does not follow" in p for p in problems), problems


def test_an_event_written_around_the_chain_is_reported(factory):
    write(factory, 1)
    with transaction(factory) as s:
        s.execute(text("INSERT INTO audit (actor, action, detail, at) VALUES "
                       "('x', 'forged', '{}', '2026-01-01 00:00:00')"))
    # It is sealed by the next commit that writes audit events, not silently ignored before.
    assert any("not sealed" in p for p in verify(factory).problems)


def test_pruning_past_retention_keeps_the_chain_verifiable(factory):
    write(factory, 5)
    old = datetime(2019, 1, 1, tzinfo=UTC)
    with transaction(factory) as s:
        s.execute(update(AuditEvent.__table__).where(AuditEvent.seq <= 3).values(at=old))
    # Changing `at` broke those hashes; the pruning removes exactly them.
    assert prune(factory, before=old + timedelta(days=1)) == 3
    result = verify(factory)
    assert result.ok, result.problems
    assert [e.seq for e in rows(factory)] == [4, 5, 6]  # 6: the audit_pruned event
    assert rows(factory)[-1].action == "audit_pruned"
    # Deleting the new first event is still detected through the anchor.
    with transaction(factory) as s:
        s.execute(text("DELETE FROM audit WHERE seq = 4"))
    assert not verify(factory).ok


def test_export_writes_json_lines_since_a_date(factory):
    write(factory, 3)
    out = io.StringIO()
    assert export(factory, out) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [ln["seq"] for ln in lines] == [1, 2, 3] and lines[1]["prev_hash"] == lines[0]["hash"]
    later = io.StringIO()
    assert export(factory, later, since=datetime.now(UTC) + timedelta(days=1)) == 0


def test_concurrent_writers_make_one_chain(factory):
    def worker(k: int) -> None:
        for i in range(10):
            with transaction(factory) as s:
                s.add(AuditEvent(case_id=None, actor=f"t{k}", action="edited", detail={"i": i}))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(factory)
    assert result.ok and result.events == 40, result.problems


def test_the_cli_verifies_and_exports(factory, settings, tmp_path, capsys, monkeypatch):
    config = tmp_path / "cc.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n'
                      f'[privacy]\nraw_mail_keys = ["{settings.privacy.raw_mail_keys[0].get_secret_value()}"]\n')
    write(factory, 2)
    assert main(["--config", str(config), "audit", "verify"]) == 0
    assert "audit chain intact: 2 event(s)" in capsys.readouterr().out
    target = tmp_path / "audit.jsonl"
    assert main(["--config", str(config), "audit", "export", "--since", "2020-01-01",
                 "-o", str(target)]) == 0
    assert len(target.read_text().splitlines()) == 2
    with transaction(factory) as s:
        s.execute(text("UPDATE audit SET action = 'rejected' WHERE seq = 1"))
    assert main(["--config", str(config), "audit", "verify"]) == 1
    assert "TAMPERED" in capsys.readouterr().out
