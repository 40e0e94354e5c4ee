"""One poller per mailbox: the Redis lock (redis-py's Lock, renewed by a thread)."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest
import redis

from consultant.intake.lock import LockHeld, lock_key, mailbox_lock


def test_second_poller_waits_and_lock_is_released(redis_url):
    with mailbox_lock(redis_url, "consult@imap.test/INBOX", ttl=5):
        with pytest.raises(LockHeld, match=f"another poller holds .*held by .* pid {os.getpid()}"):
            with mailbox_lock(redis_url, "consult@imap.test/INBOX", ttl=5):
                pass
        with mailbox_lock(redis_url, "other@imap.test/INBOX", ttl=5):
            pass  # another mailbox is independent
    with mailbox_lock(redis_url, "consult@imap.test/INBOX", ttl=5):
        pass  # released on exit


def _wait(condition, seconds: float = 10) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_lock_is_renewed_while_held_and_retaken_after_an_expiry(redis_url):
    client = redis.Redis.from_url(redis_url)
    key = lock_key("renew@imap.test/INBOX")
    lost = threading.Event()
    with mailbox_lock(redis_url, "renew@imap.test/INBOX", ttl=1, on_lost=lost):
        token = client.get(key)
        time.sleep(2.5)  # more than twice the ttl: only renewals keep it
        assert client.get(key) == token and 0 < client.pttl(key) <= 1000
        client.delete(key)  # as if it had expired (e.g. Redis restarted) with nobody waiting
        assert _wait(lambda: client.get(key) == token), "the free lock was not taken again"
        assert not lost.is_set()
    assert client.get(key) is None


def test_a_lock_taken_over_by_another_poller_is_reported_lost(redis_url, caplog):
    client = redis.Redis.from_url(redis_url)
    key = lock_key("lost@imap.test/INBOX")
    lost = threading.Event()
    with caplog.at_level(logging.ERROR, logger="consultant.intake.lock"):
        with mailbox_lock(redis_url, "lost@imap.test/INBOX", ttl=1, on_lost=lost):
            client.set(key, "other-host pid 1", px=5000)  # it expired and someone else took it
            assert lost.wait(5), "the renewal thread did not notice the lock was taken"
        assert client.get(key) == b"other-host pid 1"  # leaving did not release another's lock
    assert "lost the poller lock" in caplog.text and "other-host pid 1" in caplog.text
    client.delete(key)


def test_no_lock_for_another_broker_and_a_warning_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="consultant.intake.lock"):
        with mailbox_lock("sqla+sqlite:///var/broker.sqlite", "x"):
            with mailbox_lock("sqla+sqlite:///var/broker.sqlite", "x"):
                pass
    assert "the broker is not Redis, so no lock keeps a second poller off" in caplog.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_second_poller_thread_on_the_mailbox_waits_then_takes_over(settings, imap_server, redis_url,
                                                                     caplog):
    from consultant.runtime import Runtime
    from consultant.services import PollerThread
    from tests.servers import empty_mailbox

    empty_mailbox(imap_server, "erin")
    settings.broker.url = redis_url
    settings.imap.host, settings.imap.port, settings.imap.ssl = imap_server.host, imap_server.port, False
    settings.imap.username, settings.imap.password = "erin", imap_server.users["erin"]
    settings.imap.poll_interval, settings.imap.idle = 1, False
    rt = Runtime(settings)
    client = redis.Redis.from_url(redis_url)
    key = lock_key(f"erin@{imap_server.host}/INBOX")
    first = PollerThread(rt, settings.imap).start()
    second: PollerThread | None = None
    try:
        assert _wait(lambda: client.get(key) is not None)
        holder = client.get(key)
        with caplog.at_level(logging.WARNING, logger="consultant.services"):
            second = PollerThread(rt, settings.imap).start()
            assert _wait(lambda: "another poller holds" in caplog.text)
        assert client.get(key) == holder and "waiting" in caplog.text
        first.stop()  # releases the lock; the second takes it at its next try (10 s)
        assert _wait(lambda: client.get(key) not in (None, holder), seconds=30)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        rt.dispose()
