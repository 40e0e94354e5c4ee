"""The engine's pooled connections: tested after an idle gap, not on every checkout."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from consultant import db
from consultant.db import make_engine


def _kill_backends(engine) -> None:  # type: ignore[no-untyped-def]
    """Terminate the server side of every connection ``engine`` holds (as a restart would)."""
    with engine.connect() as conn:
        own = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = make_engine(engine.url.render_as_string(hide_password=False))
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE pid = :pid"), {"pid": own})
        conn.commit()
    admin.dispose()


def _pings(engine) -> list[int]:  # type: ignore[no-untyped-def]
    seen: list[int] = []
    original = engine.dialect.do_ping

    def counting(dbapi_conn):  # type: ignore[no-untyped-def]
        seen.append(1)
        return original(dbapi_conn)

    engine.dialect.do_ping = counting
    return seen


def test_a_busy_connection_is_not_pinged_on_each_checkout(postgres_url):
    engine = make_engine(postgres_url)
    pings = _pings(engine)
    for _ in range(5):
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    assert pings == []
    engine.dispose()


def test_a_connection_dropped_while_idle_is_replaced_on_checkout(postgres_url, monkeypatch):
    engine = make_engine(postgres_url)
    pings = _pings(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    _kill_backends(engine)
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # every checkout counts as after a gap
    with engine.connect() as conn:  # the dead connection fails its ping and is replaced
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert pings  # it was tested
    engine.dispose()


def test_a_connection_dropped_mid_burst_fails_loudly_once_then_recovers(postgres_url):
    """Within the idle window nothing is tested: the statement fails (the task is retried as a
    transient error) and the pool is invalidated, so the next checkout connects afresh."""
    engine = make_engine(postgres_url)
    resets: list[int] = []
    event.listen(engine, "invalidate", lambda *a: resets.append(1))
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    _kill_backends(engine)
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert resets
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
