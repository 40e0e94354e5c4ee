"""One poller per mailbox: a Redis lock, renewed while held, when the broker is Redis.

Two pollers on one folder would both fetch the same UIDs; storage would deduplicate them, but
they would race on flags/moves and double the IMAP load, so the second one waits instead.
With the embedded SQLite broker everything runs in one process and no lock is needed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class LockHeld(Exception):
    pass


@contextmanager
def mailbox_lock(broker_url: str, name: str, ttl: int = 60,
                 on_lost: threading.Event | None = None) -> Iterator[None]:
    """Hold ``caseconsultant:poller:<name>`` in Redis for the duration (no-op for other brokers)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        yield
        return
    import redis

    client = redis.Redis.from_url(broker_url)
    key = f"caseconsultant:poller:{name}"
    token = uuid.uuid4().hex
    if not client.set(key, token, nx=True, ex=ttl):
        raise LockHeld(f"another poller holds {key} (held by token {client.get(key)!r})")
    stop = threading.Event()

    def renew() -> None:
        # Extend only if we still own it (compare-and-set in a Lua script).
        script = client.register_script(
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end")
        while not stop.wait(ttl / 3):
            try:
                if not script(keys=[key], args=[token, ttl]):
                    log.error("lost the poller lock %s", key)
                    if on_lost is not None:
                        on_lost.set()
                    return
            except Exception as exc:  # noqa: BLE001 - retried at the next interval
                log.warning("could not renew %s: %s", key, exc)

    thread = threading.Thread(target=renew, name="poller-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        client.eval("if redis.call('get', KEYS[1]) == ARGV[1] then "
                    "return redis.call('del', KEYS[1]) else return 0 end", 1, key, token)
        client.close()
