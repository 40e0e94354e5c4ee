"""One poller per mailbox: the Redis lock."""

from __future__ import annotations

import pytest

from consultant.intake.lock import LockHeld, mailbox_lock


def test_second_poller_waits_and_lock_is_released(redis_url):
    with mailbox_lock(redis_url, "consult@imap.test/INBOX", ttl=5):
        with pytest.raises(LockHeld, match="another poller"):
            with mailbox_lock(redis_url, "consult@imap.test/INBOX", ttl=5):
                pass
        with mailbox_lock(redis_url, "other@imap.test/INBOX", ttl=5):
            pass  # another mailbox is independent
    with mailbox_lock(redis_url, "consult@imap.test/INBOX", ttl=5):
        pass  # released on exit


def test_no_lock_needed_for_the_embedded_broker():
    with mailbox_lock("sqla+sqlite:///var/broker.sqlite", "x"):
        with mailbox_lock("sqla+sqlite:///var/broker.sqlite", "x"):
            pass
