"""(6) Scale: how ingest (1) and latency (2) change with stored cases and with mailbox size.

Stored cases: a fresh database is filled with N cases (requesters, their mails, a machine draft
each) by server-side bulk ``INSERT … SELECT generate_series``; then a batch of new questions is
ingested (IMAP → disposition) and a latency run at 20 mails/s is made on top.

Mailbox size: M mails are written straight into the Dovecot user's Maildir (much faster than
APPEND), Dovecot indexes them on the next SELECT, and the poller's state is set as if it had
processed them.  Then a few new mails are APPENDed and one poll pass is timed: the poller must
stay O(new mail), not O(mailbox).  A latency run at 20 mails/s follows on the same mailbox.

The ceiling of each figure is the same figure at the smallest size, measured in the same run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.common import (
    Env,
    Figure,
    Sizes,
    empty_folder,
    imap_client,
    median,
    percentile,
    pipeline,
    question_mail,
)
from bench.ingest import wait_decided
from bench.latency import pipeline_run

BULK_SQL = [
    """INSERT INTO requesters (email, name, plan, created_at)
       SELECT 'bulk' || g || '@old.clinic.test', 'Bulk ' || g, 'registered', now()
       FROM generate_series(1, GREATEST(1, :n / 5)) g""",
    """INSERT INTO cases (status, requester_id, subject, first_mail_id, codes, findings, facts,
                          rule_hits, question_types, flags, created_at, updated_at, drafted_at)
       SELECT (ARRAY['sent','awaiting_review','rejected','needs_info'])[1 + g % 4],
              (SELECT min(id) FROM requesters) + g % GREATEST(1, :n / 5),
              'Old question ' || g, :base + g, '[]', '[]', '{}', '[]', '[]', '[]',
              now() - (g || ' minutes')::interval, now(), now()
       FROM generate_series(1, :n) g""",
    """INSERT INTO inbound_mail (raw, raw_sha256, size, message_id, from_addr, subject, source,
                                 received_at, disposition, rule_hits, attempts, case_id)
       SELECT convert_to('Subject: Old question ' || c.id || E'\\r\\n\\r\\nbody', 'UTF8'),
              md5('bulk' || c.id) || md5('mail' || c.id), 40, '<bulk.' || c.id || '@old.clinic.test>',
              r.email, c.subject, 'imap', c.created_at, 'case', '["new_case"]', 1, c.id
       FROM cases c JOIN requesters r ON r.id = c.requester_id""",
    """UPDATE cases c SET first_mail_id = m.id FROM inbound_mail m WHERE m.case_id = c.id""",
    """INSERT INTO drafts (case_id, version, template, text, html, author, kind, created_at)
       SELECT id, 1, 'bundling', 'Machine draft for case ' || id, NULL, 'machine', 'answer', now()
       FROM cases""",
    "ANALYZE",
]


def bulk_cases(db_url: str, n: int) -> float:
    """Insert ``n`` old cases with their mail and draft; seconds taken."""
    engine = create_engine(db_url)
    start = time.perf_counter()
    with engine.begin() as conn:
        for sql in BULK_SQL:
            conn.execute(text(sql), {"n": n, "base": 10_000_000})
    seconds = time.perf_counter() - start
    engine.dispose()
    return seconds


def append_batch(env: Env, user: str, n: int, tag: str) -> None:
    with imap_client(env, user) as c:
        for i in range(n):
            c.append("INBOX", question_mail(i, tag=tag)[1])


def cases_axis(env: Env, sizes: Sizes) -> list[Figure]:
    from consultant.db import make_engine, make_session_factory

    user = "scale"
    results: dict[int, tuple[float, float, float]] = {}
    for n in sizes.case_sizes:
        empty_folder(env, user)
        env.flush_redis()
        db_url = env.new_database()
        fill_s = bulk_cases(db_url, n)
        settings = env.settings(db_url, user)
        engine = make_engine(db_url)
        factory = make_session_factory(engine)
        append_batch(env, user, sizes.scale_batch, tag=f"scale{n}")
        with pipeline(settings) as rt:
            decided, seconds = wait_decided(factory, n + sizes.scale_batch)
            rate = (decided - n) / seconds
            got = pipeline_run(env, rt, user, 20, int(20 * sizes.scale_latency_seconds),
                               tag=f"scalelat{n}").got
        engine.dispose()
        results[n] = (rate, percentile(got, 95) if got else float("nan"), fill_s)
    base = min(results)
    figures = []
    for n, (rate, p95, fill_s) in results.items():
        figures.append(Figure(f"scale.ingest@{n:,}cases", rate, "mail/s", results[base][0],
                              note=f"{sizes.scale_batch} new questions; ceiling: same at {base:,} "
                                   f"cases; {n:,} cases bulk-inserted in {fill_s:.1f} s"))
        figures.append(Figure(f"scale.latency.p95@20/s,{n:,}cases", p95, "s", results[base][1],
                              higher_is_better=False, note=f"ceiling: same at {base:,} cases"))
    return figures


def write_maildir(env: Env, user: str, start: int, count: int) -> float:
    """Write mails ``start … start+count-1`` into the user's Maildir/cur as seen; seconds."""
    cur = env.maildir(user) / "cur"
    uid = gid = 65534 if os.geteuid() == 0 else -1
    begin = time.perf_counter()
    stamp = int(time.time())
    # One mail rendered, the rest by substitution: building 50k EmailMessages took ~80 s.
    template = question_mail(0, tag="mailbox")[1].replace(b"coder0@", b"coder{n}@")
    template = template.replace(b"<mailbox.0.", b"<mailbox.{n}.")
    for i in range(start, start + count):
        path = Path(cur, f"{stamp}.M{i}P{os.getpid()}.bench:2,S")
        path.write_bytes(template.replace(b"{n}", str(i).encode()))
        if uid != -1:
            os.chown(path, uid, gid)
    return time.perf_counter() - begin


def mailbox_axis(env: Env, sizes: Sizes) -> list[Figure]:
    from consultant.db import make_engine, make_session_factory
    from consultant.intake.imap import ImapPoller
    from consultant.models import ImapState
    from consultant.services import _enqueue_mail
    from workers.app import configure

    user = "scale"
    empty_folder(env, user)  # also makes Dovecot create the Maildir
    results: dict[int, tuple[float, float, float]] = {}
    in_box = 0
    for m in sorted(sizes.mailbox_sizes):
        write_s = write_maildir(env, user, in_box, m - in_box)
        with imap_client(env, user) as c:
            start = time.perf_counter()
            info = c.select_folder("INBOX")
            index_s = time.perf_counter() - start
            in_box = int(info[b"EXISTS"])
            last_uid = int(info[b"UIDNEXT"]) - 1
            uidvalidity = int(info[b"UIDVALIDITY"])
        env.flush_redis()
        settings = env.settings(env.new_database(), user)
        configure(settings)
        engine = make_engine(settings.database.url)
        factory = make_session_factory(engine)
        with factory() as s, s.begin():
            s.add(ImapState(mailbox=f"{user}@{settings.imap.host}", folder="INBOX",
                            uidvalidity=uidvalidity, last_uid=last_uid))
        poller = ImapPoller(settings.imap, factory, _enqueue_mail, settings.service.max_message_bytes)
        poller.poll_once()  # connect; nothing new yet
        polls = []
        for rep in range(3):
            append_batch(env, user, sizes.new_mails, tag=f"box{m}.{rep}")
            start = time.perf_counter()
            result = poller.poll_once()
            polls.append(time.perf_counter() - start)
            assert result.fetched == sizes.new_mails, result
        poller.disconnect()
        # Latency with that mailbox behind the poller (its state now includes the new mails).
        with pipeline(settings, poller=True) as rt:
            wait_decided(factory, 3 * sizes.new_mails, timeout=60, stall=5)
            got = pipeline_run(env, rt, user, 20, int(20 * sizes.scale_latency_seconds / 2),
                               tag=f"boxlat{m}").got
        engine.dispose()
        in_box += 3 * sizes.new_mails
        results[m] = (median(polls), percentile(got, 95) if got else float("nan"), index_s)
        print(f"  mailbox {m:,}: Maildir write {write_s:.1f} s, first SELECT {index_s:.2f} s",
              flush=True)
    base = min(results)
    figures = []
    for m, (poll_s, p95, index_s) in results.items():
        figures.append(Figure(f"scale.poll({sizes.new_mails} new)@{m:,}mailbox", poll_s, "s",
                              results[base][0], higher_is_better=False,
                              note=f"median of 3; ceiling: same at {base:,}; first SELECT {index_s:.2f} s"))
        figures.append(Figure(f"scale.latency.p95@20/s,{m:,}mailbox", p95, "s", results[base][1],
                              higher_is_better=False, note=f"ceiling: same at {base:,} mails"))
    return figures


def run(env: Env, sizes: Sizes) -> list[Figure]:
    return cases_axis(env, sizes) + mailbox_axis(env, sizes)
