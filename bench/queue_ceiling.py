"""(3) Queue ceiling: Celery + Redis enqueue and drain of empty tasks vs our task's overhead.

Both run on the same Celery app and configuration (JSON, acks_late, prefetch 1) and the same
in-process worker (2 threads, as ``run`` starts it).  Ours is ``process_mail`` for mails that
already have a disposition: the task's fixed cost (runtime, session, a row by primary key)
without the work it guards.
"""

from __future__ import annotations

import threading
import time

from celery import signals
from sqlalchemy import insert

from bench.common import Env, Figure, Sizes, pipeline, wait_until


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def __call__(self, sender=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            now = time.perf_counter()
            if self.count == 0:
                self.first = now
            self.count += 1
            self.last = now


def _drain(settings, n: int) -> float:  # type: ignore[no-untyped-def]
    """Start the worker on a full queue; tasks/s from the first task start to the last end."""
    started, ended = Counter(), Counter()
    signals.task_prerun.connect(started, weak=False)
    signals.task_postrun.connect(ended, weak=False)
    try:
        with pipeline(settings, poller=False, threads=True):
            wait_until(lambda: ended.count >= n, timeout=300, interval=0.02)
    finally:
        signals.task_prerun.disconnect(started)
        signals.task_postrun.disconnect(ended)
    return ended.count / (ended.last - started.first)


def run(env: Env, sizes: Sizes) -> list[Figure]:
    from consultant.models import InboundMail
    from workers.app import app, configure

    n = sizes.queue_tasks
    env.flush_redis()
    settings = env.settings(env.new_database(), "ingest")
    configure(settings)

    @app.task(name="bench.noop")
    def noop(x: int) -> None:
        return None

    start = time.perf_counter()
    for i in range(n):
        noop.apply_async((i,))
    enqueue_ceiling = n / (time.perf_counter() - start)
    drain_ceiling = _drain(settings, n)

    # Mails already decided, so process_mail returns after loading the row.
    from consultant.db import make_engine
    from consultant.privacy.crypto import load_keys

    engine = make_engine(settings.database.url, keys=load_keys(settings.privacy))
    with engine.begin() as conn:
        conn.execute(insert(InboundMail), [
            {"raw": b"x", "raw_sha256": f"{i:064x}", "size": 1, "source": "cli", "rule_hits": [],
             "disposition": "bounce", "attempts": 1} for i in range(n)])
        ids = [r[0] for r in conn.exec_driver_sql("select id from inbound_mail order by id")]
    engine.dispose()
    from consultant.services import _enqueue_mail

    start = time.perf_counter()
    for mail_id in ids:
        _enqueue_mail(mail_id)
    enqueue_ours = n / (time.perf_counter() - start)
    drain_ours = _drain(settings, n)
    return [
        Figure("queue.enqueue(process_mail)", enqueue_ours, "task/s", enqueue_ceiling,
               note=f"ceiling: empty task apply_async, {n} tasks"),
        Figure("queue.drain(process_mail, decided)", drain_ours, "task/s", drain_ceiling,
               note="ceiling: empty task drained by the same worker (2 threads)"),
    ]
