"""(4) Sending: answers/s to an aiosmtpd sink over one reused connection.

Ceiling: a raw ``smtplib`` loop (one connection, ``sendmail`` per message).  Ours:
``send_one`` with one ``SmtpTransport`` over outbox rows in PostgreSQL (claim → send → record,
two transactions per answer), the same bytes; and the ``send_outbox`` Celery tasks, one per
answer as approval enqueues them, on 2 ``--pool=solo`` worker processes (each task goes on with
further due answers: record + next claim in one commit).  That figure is answers accepted by
the relay per second, first enqueue to last acceptance; the tasks queued for answers a batch
already sent still run afterwards (their cost is the ``queue`` section's).  Then the same with
the IMAP Sent copy on (as production reconciles against it), beside smtplib + IMAP APPEND.
"""

from __future__ import annotations

import smtplib
import time

from sqlalchemy import insert, select

from bench.common import Env, Figure, Sizes, imap_client, pipeline, wait_until


def _answer(settings, i: int) -> bytes:  # type: ignore[no-untyped-def]
    from consultant.outbox.compose import build_message, new_message_id

    text = ("Thank you for your question.\n\n" + "No PTP edit pairs 77301 with 77338 for this "
            "date of service; both may be reported without a modifier.\n" * 20)
    return build_message(settings, to_addr=f"coder{i}@clinic.test",
                         subject=f"Re: Can 77301 and 77338 be billed together? [CC-{i}]",
                         text=text, html=None, message_id=new_message_id(settings),
                         in_reply_to=f"<q{i}@clinic.test>", references=[])


def _outbox_rows(engine, settings, n: int, tag: str) -> list[int]:  # type: ignore[no-untyped-def]
    from consultant.models import Outbox

    rows = []
    for i in range(n):
        raw = _answer(settings, i)
        rows.append({"kind": "answer", "message_id": f"<{tag}.{i}.{time.time_ns()}@cc.test>",
                     "to_addr": f"coder{i}@clinic.test", "subject": "Re: question", "raw": raw,
                     "status": "pending", "charges_quota": False, "attempts": 0})
    with engine.begin() as conn:
        conn.execute(insert(Outbox), rows)
        return list(conn.execute(select(Outbox.id).where(Outbox.message_id.like(f"<{tag}.%"))
                                 .order_by(Outbox.id)).scalars())


def durable_commit_rate(url: str, n: int = 200) -> float:
    """Commits/s of a one-row UPDATE, one after another, on ``url``'s database: exactly-once
    sending makes one such commit per answer before its SMTP conversation, so this bounds one
    sender whatever else is made fast (it is the disk's fsync latency, shared with every other
    program on the machine)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_commit (id integer PRIMARY KEY, v integer)"))
            conn.execute(text("INSERT INTO bench_commit VALUES (1, 0)"))
        with engine.connect() as conn:
            start = time.perf_counter()
            for _ in range(n):
                with conn.begin():
                    conn.execute(text("UPDATE bench_commit SET v = v + 1 WHERE id = 1"))
            rate = n / (time.perf_counter() - start)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE bench_commit"))
        return rate
    finally:
        engine.dispose()


def run(env: Env, sizes: Sizes) -> list[Figure]:
    from consultant.db import make_engine, make_session_factory
    from consultant.outbox.send import send_one
    from consultant.outbox.transport import SmtpTransport
    from tests.servers import start_smtp_sink

    n = sizes.send_messages
    sink = start_smtp_sink()
    try:
        settings = env.settings(env.new_database(), "ingest",
                                smtp_out={"maildir": "", "host": sink.host, "port": sink.port})
        sample = [_answer(settings, i) for i in range(n)]
        size = sum(len(m) for m in sample) // n
        conn = smtplib.SMTP(sink.host, sink.port)
        start = time.perf_counter()
        for i, raw in enumerate(sample):
            conn.sendmail(settings.service.address, [f"coder{i}@clinic.test"], raw)
        ceiling = n / (time.perf_counter() - start)
        conn.quit()

        commits = durable_commit_rate(settings.database.url)
        engine = make_engine(settings.database.url)
        factory = make_session_factory(engine)
        ids = _outbox_rows(engine, settings, n, "direct")
        transport = SmtpTransport(settings.smtp_out)
        start = time.perf_counter()
        statuses = [send_one(factory, settings, i, transport) for i in ids]
        ours = n / (time.perf_counter() - start)
        transport.close()
        sent_direct = statuses.count("sent")

        tasks = _through_tasks(env, engine, settings, sink, n, "task")

        # With the Sent copy on: the ceiling appends each message over one IMAP connection too.
        sent_settings = env.settings(settings.database.url, "ingest",
                                     smtp_out={"maildir": "", "host": sink.host, "port": sink.port},
                                     imap={"sent_folder": "Sent"})
        with imap_client(env, "ingest") as client:
            if not client.folder_exists("Sent"):
                client.create_folder("Sent")
            conn = smtplib.SMTP(sink.host, sink.port)
            start = time.perf_counter()
            for i, raw in enumerate(sample):
                conn.sendmail(settings.service.address, [f"coder{i}@clinic.test"], raw)
                client.append("Sent", raw, flags=[b"\\Seen"])
            sent_ceiling = n / (time.perf_counter() - start)
            conn.quit()
        with_copy = _through_tasks(env, engine, sent_settings, sink, n, "sentcopy")
        engine.dispose()
    finally:
        sink.stop()
    return [
        Figure("send.smtplib_ceiling", ceiling, "msg/s", note=f"{n} answers of ~{size} B, one connection"),
        Figure("send.durable_commits", commits, "commit/s",
               note="one fsync'd commit after another: one sender's limit at one commit per answer"),
        Figure("send.send_one(SmtpTransport)", ours, "msg/s", ceiling,
               note=f"{sent_direct}/{n} sent; claim+send+record per answer"),
        Figure("send.send_outbox tasks(2 workers)", tasks, "msg/s", ceiling,
               note="one task per answer; one SMTP connection per worker; goal: ratio >= 0.5"),
        Figure("send.smtplib+append_ceiling", sent_ceiling, "msg/s",
               note="sendmail + IMAP APPEND to Sent per message, one connection each"),
        Figure("send.send_outbox tasks+Sent copy(2 workers)", with_copy, "msg/s", sent_ceiling,
               note="as above, with [imap] sent_folder set"),
    ]


def _through_tasks(env: Env, engine, settings, sink, n: int, tag: str) -> float:  # type: ignore[no-untyped-def]
    """Answers/s through ``send_outbox`` tasks, one per answer, on 2 solo worker processes."""
    env.flush_redis()
    ids = _outbox_rows(engine, settings, n, tag)
    before = len(sink.messages)
    with pipeline(settings, poller=False):
        from workers.tasks import send_outbox

        start = time.perf_counter()
        for i in ids:
            send_outbox.delay(i)
        wait_until(lambda: len(sink.messages) - before >= n, timeout=300)
        return (len(sink.messages) - before) / (time.perf_counter() - start)
