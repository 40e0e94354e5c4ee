"""(3) Queue ceiling: Celery + Redis enqueue and drain of empty tasks vs our task's overhead.

Both run on the same Celery app and configuration (JSON, acks_late, the configured prefetch)
and the worker as deployed: ``--pool=solo`` worker *processes* (2, and 1 for the per-task
cost).  The queue is filled first, then the workers start; the drain is timed from the first
task taken off the queue to the moment the queue and Redis's unacked set are both empty,
watched from outside (the broker's own state, so the tasks carry no instrumentation).
Ours is ``process_mail`` for mails that already have a disposition: the task's fixed cost
(runtime, session, one row by primary key) without the work it guards.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import insert

from bench.common import Env, Figure, Sizes, pipeline


def _waiting(client: Any) -> int:
    """Messages waiting in any queue (kombu keeps each queue as a Redis list)."""
    return sum(client.llen(key) for key in client.keys("*")
               if not key.startswith(b"_kombu") and client.type(key) == b"list")


class DrainWatch(threading.Thread):
    """Polls the broker every few ms: when the first task was taken, when the last was acked."""

    def __init__(self, redis_url: str, n: int) -> None:
        super().__init__(name="drain-watch", daemon=True)
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.n = n
        self.first = self.last = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            waiting = _waiting(self.client)
            now = time.perf_counter()
            if not self.first and waiting < self.n:
                self.first = now
            # Taken tasks sit in kombu's "unacked" hash until acknowledged (acks_late).
            if self.first and waiting == 0 and self.client.hlen("unacked") == 0:
                self.last = now
                self.done.set()
            time.sleep(0.002)

    @property
    def rate(self) -> float:
        return self.n / (self.last - self.first) if self.last > self.first else float("nan")


def solo_drain_rate(env: Env, settings: Any, n: int, *, task: str, args: list[tuple] | None = None,
                    workers: int = 1) -> float:
    """Fill the queue with ``n`` ``task`` calls (``args`` each, else ``(i,)``), then time
    ``workers`` solo worker processes draining it; tasks/s."""
    import bench.tasks  # noqa: F401  (registers bench.noop in this process too, to publish it)
    from workers.app import app, configure

    configure(settings)  # publish to this run's broker
    env.flush_redis()
    for i in range(n):
        app.send_task(task, args[i] if args else (i,))
    watch = DrainWatch(env.redis_url, n)
    watch.start()
    with pipeline(settings, poller=False, workers=workers, include=("bench.tasks",)):
        watch.done.wait(timeout=300)
    watch.done.set()
    return watch.rate


def run(env: Env, sizes: Sizes) -> list[Figure]:
    import bench.tasks
    from consultant.db import make_engine
    from consultant.models import InboundMail
    from consultant.services import _enqueue_mail
    from workers.app import app, configure

    n = sizes.queue_tasks
    env.flush_redis()
    settings = env.settings(env.new_database(), "ingest")
    configure(settings)

    start = time.perf_counter()
    for i in range(n):
        bench.tasks.noop.apply_async((i,))
    enqueue_ceiling = n / (time.perf_counter() - start)
    env.flush_redis()

    # Mails already decided, so process_mail returns after loading the row.
    from consultant.privacy.crypto import load_keys

    engine = make_engine(settings.database.url, keys=load_keys(settings.privacy))
    with engine.begin() as conn:
        conn.execute(insert(InboundMail), [
            {"raw": b"x", "raw_sha256": f"{i:064x}", "size": 1, "source": "cli", "rule_hits": [],
             "disposition": "bounce", "attempts": 1} for i in range(n)])
        ids = [r[0] for r in conn.exec_driver_sql("select id from inbound_mail order by id")]
    engine.dispose()
    start = time.perf_counter()
    for mail_id in ids:
        _enqueue_mail(mail_id)
    enqueue_ours = n / (time.perf_counter() - start)
    env.flush_redis()

    figures = [Figure("queue.enqueue(process_mail)", enqueue_ours, "task/s", enqueue_ceiling,
                      note=f"ceiling: empty task apply_async, {n} tasks")]
    for workers in (1, 2):
        ceiling = solo_drain_rate(env, settings, n, task="bench.noop", workers=workers)
        ours = solo_drain_rate(env, settings, n, task=app.tasks["caseconsultant.process_mail"].name,
                               args=[(i,) for i in ids], workers=workers)
        figures.append(Figure(f"queue.drain(process_mail, decided, {workers} worker"
                              f"{'s' if workers > 1 else ''})", ours, "task/s", ceiling,
                              note="ceiling: empty task, same --pool=solo worker processes"))
    return figures
