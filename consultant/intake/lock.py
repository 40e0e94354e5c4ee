"""One poller per mailbox: redis-py's ``Lock``, renewed while held, when the broker is Redis.

Two pollers on one folder would both fetch the same UIDs; storage would deduplicate them, but
they would race on flags/moves and double the IMAP load, so the second one waits instead (the
caller retries; :class:`LockHeld` says who holds it).

Any other broker (the embedded SQLite broker of a one-machine install, ``memory://`` in tests)
has no shared lock service, so no lock is taken there: a warning says so, and an operator on
such a broker runs one poller process per mailbox (``caseconsultant run`` or ``poll``, once).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError, LockNotOwnedError

log = logging.getLogger(__name__)


class LockHeld(Exception):
    """Another poller holds this mailbox's lock."""


class LockLost(Exception):
    """This poller's lock was taken over (it had expired): stop polling and queue up again."""


def lock_key(name: str) -> str:
    return f"caseconsultant:poller:{name}"


@contextmanager
def mailbox_lock(broker_url: str, name: str, ttl: float = 60,
                 on_lost: threading.Event | None = None) -> Iterator[None]:
    """Hold ``caseconsultant:poller:<name>`` in Redis for the duration (none for other brokers).

    The lock expires ``ttl`` seconds after its last renewal, so a poller that died frees the
    mailbox within ``ttl``; a thread resets the expiry every ``ttl / 3``.  If a renewal finds
    the lock gone it takes it again when it is free; when another poller has it, ``on_lost`` is
    set and the caller must stop polling.
    """
    if not broker_url.startswith(("redis://", "rediss://")):
        log.warning("poller %s: the broker is not Redis, so no lock keeps a second poller off "
                    "this mailbox; run one poller per mailbox", name)
        yield
        return
    client = redis.Redis.from_url(broker_url)
    # thread_local=False: the renewal thread must see the token the acquiring thread stored.
    lock = client.lock(lock_key(name), timeout=ttl, blocking=False, thread_local=False)
    # The token is what another poller's LockHeld shows: which host and process to look at.
    holder = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"
    try:
        if not lock.acquire(token=holder):
            raise LockHeld(f"another poller holds {lock_key(name)} ({_holder(client, name)})")
    except BaseException:
        client.close()
        raise
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                lock.reacquire()  # the expiry back to a full ttl, if the token is still ours
            except LockNotOwnedError:
                if lock.acquire(token=holder):
                    log.warning("the poller lock %s had expired; taken again", lock_key(name))
                    continue
                log.error("lost the poller lock %s to %s", lock_key(name), _holder(client, name))
                if on_lost is not None:
                    on_lost.set()
                return
            except redis.RedisError as exc:
                log.warning("could not renew %s (retried in %.0f s): %s", lock_key(name), ttl / 3, exc)

    thread = threading.Thread(target=renew, name=f"poller-lock {name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            lock.release()
        except LockError:
            pass  # no longer ours (expired and taken): nothing to release
        except redis.RedisError as exc:
            log.warning("could not release %s (it expires in %.0f s): %s", lock_key(name), ttl, exc)
        client.close()


def _holder(client: redis.Redis, name: str) -> str:
    value = client.get(lock_key(name))
    if value is None:
        return "released meanwhile"
    return "held by " + (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
