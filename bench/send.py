"""(4) Sending: answers/s to an aiosmtpd sink over one reused connection.

Ceiling: a raw ``smtplib`` loop (one connection, ``sendmail`` per message).  Ours:
``send_one`` with one ``SmtpTransport`` over outbox rows in PostgreSQL (claim → send → record,
two transactions per answer), the same bytes.  Also the ``send_outbox`` Celery task path, which
makes a transport (an SMTP connection) per task.
"""

from __future__ import annotations

import smtplib
import time

from sqlalchemy import insert, select

from bench.common import Env, Figure, Sizes, pipeline, wait_until


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

        engine = make_engine(settings.database.url)
        factory = make_session_factory(engine)
        ids = _outbox_rows(engine, settings, n, "direct")
        transport = SmtpTransport(settings.smtp_out)
        start = time.perf_counter()
        statuses = [send_one(factory, settings, i, transport) for i in ids]
        ours = n / (time.perf_counter() - start)
        transport.close()
        sent_direct = statuses.count("sent")

        # Through Celery: one send_outbox task per answer, as approval enqueues them.
        env.flush_redis()
        ids = _outbox_rows(engine, settings, n, "task")
        before = len(sink.messages)
        with pipeline(settings, poller=False):
            from workers.tasks import send_outbox

            start = time.perf_counter()
            for i in ids:
                send_outbox.delay(i)
            wait_until(lambda: len(sink.messages) - before >= n, timeout=300)
            tasks = (len(sink.messages) - before) / (time.perf_counter() - start)
        engine.dispose()
    finally:
        sink.stop()
    return [
        Figure("send.smtplib_ceiling", ceiling, "msg/s", note=f"{n} answers of ~{size} B, one connection"),
        Figure("send.send_one(SmtpTransport)", ours, "msg/s", ceiling,
               note=f"{sent_direct}/{n} sent; claim+send+record per answer"),
        Figure("send.send_outbox tasks(2 workers)", tasks, "msg/s", ceiling,
               note="one SMTP connection per worker, reused across tasks"),
    ]
