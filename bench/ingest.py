"""(1) Parse ceiling vs ingest, over the shared mail corpus.

Ceiling: the standard library alone, ``BytesParser(policy=default)`` plus body extraction, in
one process.  Against it: our parser + classification rules on the same bytes, and our intake on
the same mails loaded into Dovecot: the poller's fetch → store → enqueue → flag pass (worker
stopped), the workers draining those tasks (classify, thread, open the case, draft), and both
running together (IMAP → disposition committed), which is the figure the goal (≥ 50 %) is about.
Last, the same with ``bench.floor_mail`` in place of ``process_mail`` (``ingest.floor``): what
the poller, broker, worker processes and servers cost per mail before the product's own work.
"""

from __future__ import annotations

import time
from email import policy
from email.parser import BytesParser

from sqlalchemy import func, select

from bench.common import Env, Figure, Sizes, floor_pipeline, imap_client, load_corpus, pipeline

# The stdlib parser needs ~425 MiB and minutes on a header of ~8,000 encoded words
# (jstedfast-mimekit/messages/stack-overflow.txt, TESTING.md): the ceiling bounds header size
# first, as any sane caller must (our parser does the same check before parsing).
MAX_HEADER_BYTES = 64 * 1024


def _header_len(raw: bytes) -> int:
    for sep in (b"\r\n\r\n", b"\n\n"):
        pos = raw.find(sep)
        if pos != -1:
            return pos
    return len(raw)


def stdlib_parse(raw: bytes) -> str:
    """The ceiling's unit of work: full parse and the preferred body's decoded text."""
    if _header_len(raw) > MAX_HEADER_BYTES:
        return ""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        body = msg.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
        return body.get_content() if body is not None else ""
    except Exception:  # noqa: BLE001 - LookupError on unknown charsets etc. (TESTING.md)
        return ""


def ours_parse(raw: bytes) -> object:
    from consultant.mail.parse import MailParseError, parse_mail
    from consultant.mail.rules import classify_machine_mail

    try:
        return classify_machine_mail(parse_mail(raw))
    except MailParseError:
        return None


def rate(fn, mails: list[bytes]) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for raw in mails:
        fn(raw)
    return len(mails) / (time.perf_counter() - start)


def append_all(env: Env, user: str, mails: list[bytes]) -> tuple[int, float]:
    """APPEND every mail to INBOX on one connection; (appended, seconds)."""
    from bench.common import empty_folder

    empty_folder(env, user)
    done = 0
    with imap_client(env, user) as c:
        start = time.perf_counter()
        for raw in mails:
            try:
                c.append("INBOX", raw)
                done += 1
            except Exception:  # noqa: BLE001 - a mail Dovecot refuses is left out, and counted
                pass
        return done, time.perf_counter() - start


def raw_fetch_rate(env: Env, user: str) -> float:
    """The IMAP part alone: UID SEARCH + RFC822.SIZE + BODY.PEEK[] in batches of 100."""
    with imap_client(env, user) as c:
        c.select_folder("INBOX", readonly=True)
        start = time.perf_counter()
        uids = c.search(["UID", "1:*"])
        for i in range(0, len(uids), 100):
            batch = uids[i:i + 100]
            c.fetch(batch, ["RFC822.SIZE"])
            c.fetch(batch, ["BODY.PEEK[]"])
        return len(uids) / (time.perf_counter() - start)


def _counts(factory) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    from consultant.models import InboundMail

    with factory() as s:
        total = s.execute(select(func.count(InboundMail.id))).scalar_one()
        undecided = s.execute(select(func.count(InboundMail.id))
                              .where(InboundMail.disposition.is_(None))).scalar_one()
    return int(total), int(undecided)


def wait_decided(factory, expected: int, timeout: float = 600, stall: float = 20.0):  # type: ignore[no-untyped-def]
    """Wait until ``expected`` mails are stored and decided; stop early when nothing has moved
    for ``stall`` seconds (a lost task).  Returns (decided, seconds to the last decision)."""
    start = last = time.perf_counter()
    seen = (-1, -1)
    while time.perf_counter() - start < timeout:
        total, undecided = _counts(factory)
        if (total, undecided) != seen:
            seen, last = (total, undecided), time.perf_counter()
        if total >= expected and undecided == 0:
            break
        if time.perf_counter() - last > stall:
            break
        time.sleep(0.1)
    return seen[0] - seen[1], last - start


def _lost_note(stored: int, decided: int, factory=None) -> str:  # type: ignore[no-untyped-def]
    if decided >= stored:
        return ""
    note = f"{stored - decided} mails still undecided after 20 s without progress"
    if factory is not None:
        from consultant.models import InboundMail

        with factory() as s:
            rows = s.execute(select(InboundMail.id, InboundMail.size, InboundMail.subject,
                                    InboundMail.attempts)
                             .where(InboundMail.disposition.is_(None)).limit(3)).all()
        note += ": " + "; ".join(f"#{i} {size} B attempts={n} {str(subj)[:40]!r}"
                                 for i, size, subj, n in rows)
    return note


def run(env: Env, sizes: Sizes) -> list[Figure]:
    from consultant.db import make_engine, make_session_factory
    from consultant.intake.imap import ImapPoller
    from consultant.privacy.crypto import load_keys
    from consultant.services import _enqueue_mail

    corpus = load_corpus(sizes.corpus_limit)
    mails = [raw for _, raw in corpus]
    n = len(mails)
    ceiling = rate(stdlib_parse, mails)
    figures = [Figure("parse.stdlib_ceiling", ceiling, "mail/s", note=f"{n} corpus mails")]
    figures.append(Figure("parse.ours(parse+rules)", rate(ours_parse, mails), "mail/s", ceiling))

    appended, seconds = append_all(env, "ingest", mails)
    figures.append(Figure("imap.append", appended / seconds, "mail/s",
                          note=f"{appended}/{n} accepted by Dovecot"))
    figures.append(Figure("imap.raw_fetch", raw_fetch_rate(env, "ingest"), "mail/s",
                          note="UID FETCH size+body, batches of 100"))

    # Intake alone: fetch → store → enqueue → flag, no worker running.
    env.flush_redis()
    settings = env.settings(env.new_database(), "ingest")
    engine = make_engine(settings.database.url, keys=load_keys(settings.privacy))
    factory = make_session_factory(engine)
    from workers.app import configure

    configure(settings)
    poller = ImapPoller(settings.imap, factory, _enqueue_mail, settings.service.max_message_bytes)
    start = time.perf_counter()
    result = poller.poll_once()
    poll_s = time.perf_counter() - start
    poller.disconnect()
    figures.append(Figure("ingest.poll(fetch+store+enqueue+flag)", result.fetched / poll_s,
                          "mail/s", ceiling, note=f"{result.fetched} fetched, {result.stored} stored"))

    # The workers draining what the poller queued: classify, thread, case, draft.
    stored, _ = _counts(factory)
    with pipeline(settings, poller=False):
        decided, process_s = wait_decided(factory, stored)
    figures.append(Figure("ingest.process(2 workers)", decided / process_s, "mail/s",
                          ceiling, note=_lost_note(stored, decided, factory)))
    engine.dispose()

    # Both together, on a fresh database: IMAP → disposition committed for every mail.
    env.flush_redis()
    settings = env.settings(env.new_database(), "ingest")
    engine = make_engine(settings.database.url, keys=load_keys(settings.privacy))
    factory = make_session_factory(engine)
    with pipeline(settings):
        decided, full_s = wait_decided(factory, stored)
    figures.append(Figure("ingest.full(IMAP->disposition)", decided / full_s, "mail/s", ceiling,
                          note=_lost_note(stored, decided, factory) or "goal: ratio >= 0.5"))
    engine.dispose()
    figures.append(_floor_full(env, stored, ceiling))
    return figures


def _floor_full(env: Env, stored: int, ceiling: float) -> Figure:
    """``ingest.full`` with the pipeline's fixed shape alone: the same poller, Redis, 2 worker
    processes, PostgreSQL and Dovecot, with ``bench.floor_mail`` (read the stored mail, stdlib
    parse, one transaction recording a drafted case) in place of ``process_mail``.  As far as
    rewriting ``process_mail`` alone could take ``ingest.full`` on this machine."""
    env.flush_redis()
    settings = env.settings(env.new_database(), "ingest")
    with floor_pipeline(settings) as rt:
        decided, seconds = wait_decided(rt.factory, stored)  # type: ignore[attr-defined]
    return Figure("ingest.floor(IMAP->disposition, floor task)", decided / seconds, "mail/s",
                  ceiling, note=_lost_note(stored, decided) or
                  "bench.floor_mail in place of process_mail: the shape's own cost")
