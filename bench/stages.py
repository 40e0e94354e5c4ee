"""(0) Where a mail's time goes: a per-stage breakdown of intake and processing.

Question mails (and, unless ``--quick``, the corpus) are stored with ``store_raw`` and given
their disposition by ``processing.process_mail`` in this process, on PostgreSQL, with each
stage timed from outside the product (its functions wrapped here, its database calls counted
with SQLAlchemy events), so nothing in ``consultant`` knows it is measured:

- ``parse``: ``parse_mail``; ``classify``: the machine-mail rules;
- ``analysis``: ``consultant.analysis.analyse`` (once per mail); ``render``: the reply
  templates; ``drafting(rest)``: the rest of ``make_draft``;
- ``db``: statements and transactions per mail, time inside the database calls (statements,
  the pool's pre-ping, commits), ``commit`` alone;
- ``store``: the poller's ``store_raw`` (one transaction per mail);
- ``celery``: the fixed cost of one task on the deployed worker (an empty task drained by one
  ``--pool=solo`` worker process, per task), from the ``queue`` section's method;
- ``drain``: the CPU per question mail of the 2 deployed worker processes draining stored
  question mails through Celery, with their involuntary context switches per mail (the same
  code as the in-process figures; what the cores' sharing adds shows beside
  ``latency.cpu.workers``).

``other`` is what is left of ``process_mail`` (ORM bookkeeping, threading, quota, audit rows).
The figures are ms per mail; their ceiling is none (they are a breakdown, not a race), except
``parse``, shown beside the stdlib parse of the same bytes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select

from bench.common import Env, Figure, Sizes, load_corpus, question_mail


class Clock:
    """Accumulated seconds and calls per stage; nested stages subtract from their parent."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # [start, child seconds]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._stack.append([time.perf_counter(), 0.0])
        try:
            yield
        finally:
            start, children = self._stack.pop()
            spent = time.perf_counter() - start
            self.seconds[name] += spent - children
            self.calls[name] += 1
            if self._stack:
                self._stack[-1][1] += spent

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return fn(*args, **kwargs)
        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed


@contextmanager
def patched(targets: list[tuple[object, str, str]], clock: Clock) -> Iterator[None]:
    """Wrap ``module.attr`` with ``clock.stage(name)`` for the duration (bench only)."""
    saved = []
    for module, attr, name in targets:
        original = getattr(module, attr)
        saved.append((module, attr, original))
        setattr(module, attr, clock.wrap(name, original))
    try:
        yield
    finally:
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)


def instrument_engine(engine: Any, clock: Clock) -> dict[str, int]:
    """Count statements/transactions on ``engine`` and time its database calls as ``db``."""
    counts: dict[str, int] = defaultdict(int)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        counts["statements"] += 1
        clock._stack.append([time.perf_counter(), 0.0])

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        start, _ = clock._stack.pop()
        spent = time.perf_counter() - start
        clock.seconds["db"] += spent
        clock.calls["db"] += 1
        if clock._stack:
            clock._stack[-1][1] += spent

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        counts["transactions"] += 1

    dialect = engine.dialect
    commit, ping = dialect.do_commit, dialect.do_ping

    def do_commit(dbapi_conn):  # type: ignore[no-untyped-def]
        counts["commits"] += 1
        with clock.stage("commit"):
            return commit(dbapi_conn)

    def do_ping(dbapi_conn):  # type: ignore[no-untyped-def]
        counts["pings"] += 1
        with clock.stage("db"):
            return ping(dbapi_conn)

    dialect.do_commit, dialect.do_ping = do_commit, do_ping
    return counts


def drain_figure(env: Env, settings: Any, n: int) -> Figure:
    """CPU-ms per question mail of the 2 deployed worker processes (``--pool=solo``) draining
    ``n`` stored question mails as fast as they can: the same work as the in-process
    ``process_mail`` figure plus the task's cost, on CPUs the workers share only with the
    database and Redis.  Beside ``latency.cpu.workers`` (the same mails arriving one by one
    among the poller, the load generator and Dovecot), it tells how much of a mail's CPU is the
    code and how much the two cores' contention (caches, preemption)."""
    from bench.common import cpu_seconds, pipeline
    from bench.ingest import wait_decided
    from consultant.db import make_engine, make_session_factory
    from consultant.intake.store import Location, store_raw
    from consultant.models import InboundMail
    from consultant.privacy.crypto import load_keys
    from workers.app import configure
    from workers.tasks import process_mail

    env.flush_redis()
    engine = make_engine(settings.database.url, keys=load_keys(settings.privacy))
    factory = make_session_factory(engine)

    def store(first: int, count: int) -> list[int]:
        return [store_raw(factory, question_mail(i, tag="drain")[1], Location("cli")).mail_id
                for i in range(first, first + count)]

    configure(settings)
    with pipeline(settings, poller=False):
        # Warm-up outside the measurement: each worker's first mails build its caches.
        # (wait_decided waits for every stored mail to have its disposition.)
        for mail_id in store(0, 20):
            process_mail.delay(mail_id)
        wait_decided(factory, 0)
        ids = store(20, n)
        before, start = cpu_seconds(), time.perf_counter()
        for mail_id in ids:
            process_mail.delay(mail_id)
        wait_decided(factory, 0)
        seconds = time.perf_counter() - start
        after = cpu_seconds()
        switches = after["worker_switches"] - before["worker_switches"]
        with factory() as session:
            done = max(1, session.execute(
                select(func.count(InboundMail.id)).where(InboundMail.id.in_(ids),
                                                         InboundMail.disposition == "case")
            ).scalar_one())
    engine.dispose()
    return Figure("stage[questions].drain(2 workers)",
                  (after["workers"] - before["workers"]) * 1000 / done, "ms/mail",
                  note=f"worker CPU per mail draining {n} stored questions ({done} drafted, "
                       f"{done / seconds:.0f} mail/s); {switches / done:.0f} involuntary "
                       "context switches per mail")


def empty_task_ms(env: Env, settings: Any, n: int) -> float:
    """ms per empty task drained by one ``--pool=solo`` worker process (the deployed worker)."""
    from bench.queue_ceiling import solo_drain_rate

    return 1000.0 / solo_drain_rate(env, settings, n, task="bench.noop")


def run(env: Env, sizes: Sizes) -> list[Figure]:
    from bench.ingest import stdlib_parse
    from consultant import processing
    from consultant.db import make_engine, make_session_factory
    from consultant.drafting import draft
    from consultant.intake import store
    from consultant.intake.store import Location, store_raw
    from consultant.privacy.crypto import load_keys

    env.flush_redis()
    settings = env.settings(env.new_database(), "ingest")
    keys = load_keys(settings.privacy)
    engine = make_engine(settings.database.url, keys=keys)
    factory = make_session_factory(engine)
    questions = [question_mail(i, tag="stages")[1] for i in range(200 if sizes.quick else 600)]
    mails = [("questions", questions)]
    if not sizes.quick:
        mails.append(("corpus", [raw for _, raw in load_corpus(sizes.corpus_limit)]))
    # Warm up: the first mail builds caches (code data, templates) that every later one reuses.
    warm = store_raw(factory, question_mail(10_000, tag="warm")[1], Location("cli"))
    processing.process_mail(factory, settings, warm.mail_id)

    engine.dispose()
    figures: list[Figure] = []
    for label, raws in mails:
        # A fresh engine per set: the listeners below stay on it, and it is dropped after.
        engine = make_engine(settings.database.url, keys=keys)
        factory = make_session_factory(engine)
        clock = Clock()
        counts = instrument_engine(engine, clock)
        targets = [(processing, "parse_mail", "parse"),
                   (processing, "classify_machine_mail", "classify"),
                   (processing, "make_draft", "drafting"),
                   (draft, "analyse", "analysis"),
                   (draft, "render_pair", "render")]
        ids = []
        with patched([(store, "quick_headers", "store.headers")], clock):
            for raw in raws:
                with clock.stage("store"):
                    ids.append(store_raw(factory, raw, Location("cli")).mail_id)
        store_counts = dict(counts)
        counts.clear()
        with patched(targets, clock):
            for mail_id in ids:
                with clock.stage("process.other"):
                    processing.process_mail(factory, settings, mail_id)
        engine.dispose()
        figures += _figures(label, len(raws), clock, store_counts, dict(counts),
                            ceiling_parse_ms=_stdlib_ms(stdlib_parse, raws))
    figures.append(drain_figure(env, settings, 200 if sizes.quick else 1000))
    figures.append(Figure("stage.celery_task_overhead", empty_task_ms(env, settings, 500),
                          "ms/task", note="empty task, one --pool=solo worker process, acks_late"))
    return figures


def _stdlib_ms(fn: Callable[[bytes], object], raws: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in raws:
        fn(raw)
    return (time.perf_counter() - start) * 1000 / len(raws)


def _figures(label: str, n: int, clock: Clock, store_counts: dict[str, int],
             counts: dict[str, int], ceiling_parse_ms: float) -> list[Figure]:
    ms = {k: v * 1000 / n for k, v in clock.seconds.items()}
    total = sum(v for k, v in ms.items() if not k.startswith("store"))
    prefix = f"stage[{label}]"
    out = [
        Figure(f"{prefix}.store(poller)", ms.get("store", 0) + ms.get("store.headers", 0),
               "ms/mail", note=f"{store_counts.get('statements', 0) / n:.1f} statements, "
                               f"{store_counts.get('commits', 0) / n:.1f} commits per mail"),
        Figure(f"{prefix}.process_mail", total, "ms/mail", note=f"{n} mails, in-process"),
        Figure(f"{prefix}.parse", ms.get("parse", 0), "ms/mail", ceiling_parse_ms,
               higher_is_better=False, note="ceiling: stdlib parse + body"),
        Figure(f"{prefix}.classify", ms.get("classify", 0), "ms/mail"),
        Figure(f"{prefix}.analysis", ms.get("analysis", 0), "ms/mail",
               note="consultant.analysis.analyse, once per mail (its database time is under db)"),
        Figure(f"{prefix}.render", ms.get("render", 0), "ms/mail", note="the reply templates"),
        Figure(f"{prefix}.drafting(rest)", ms.get("drafting", 0), "ms/mail",
               note="make_draft around the analysis and the templates"),
        Figure(f"{prefix}.db", ms.get("db", 0), "ms/mail",
               note=f"{counts.get('statements', 0) / n:.1f} statements, "
                    f"{counts.get('transactions', 0) / n:.1f} transactions, "
                    f"{counts.get('pings', 0) / n:.1f} pre-pings per mail"),
        Figure(f"{prefix}.commit", ms.get("commit", 0), "ms/mail",
               note=f"{counts.get('commits', 0) / n:.1f} commits per mail"),
        Figure(f"{prefix}.other", ms.get("process.other", 0), "ms/mail",
               note="ORM, threading, quota, audit: process_mail minus the stages above"),
    ]
    return out
