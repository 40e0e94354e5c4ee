"""(2) Arrival → draft latency at fixed arrival rates.

Mails from distinct senders are APPENDed to Dovecot at a fixed rate while the poller IDLEs and
two Celery workers (threads, as ``caseconsultant run`` starts them) process them on Redis and
PostgreSQL.  Latency is ``Case.drafted_at`` minus the time the APPEND started, matched by
Message-ID.  The ceiling is the floor any IMAP-fed pipeline has on this machine: a bare IDLE
client that fetches and parses each new mail (stdlib) at the same rate, same Dovecot.
"""

from __future__ import annotations

import threading
import time
from email import policy
from email.parser import BytesParser

from sqlalchemy import select

from bench.common import Env, Figure, Sizes, Ticker, empty_folder, imap_client, percentile, pipeline
from bench.common import question_mail as make_question


def _appender(env: Env, user: str, mails: list[bytes]):  # type: ignore[no-untyped-def]
    client = imap_client(env, user)

    def append(i: int) -> None:
        client.append("INBOX", mails[i])

    return client, append


def idle_baseline(env: Env, rate: float, n: int) -> list[float]:
    """APPEND → bare IDLE client has fetched and parsed the mail; seconds per mail."""
    user = "baseline"
    empty_folder(env, user)
    ids, mails = zip(*(make_question(i, tag=f"base{rate}") for i in range(n)), strict=True)
    seen: dict[str, float] = {}
    ready = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        with imap_client(env, user) as c:
            c.select_folder("INBOX")
            last = max(c.search(["ALL"]) or [0])
            ready.set()
            while not stop.is_set() and len(seen) < n:
                c.idle()
                c.idle_check(timeout=1)
                c.idle_done()
                uids = [u for u in c.search(["UID", f"{last + 1}:*"]) if u > last]
                if not uids:
                    continue
                for data in c.fetch(uids, ["BODY.PEEK[]"]).values():
                    msg = BytesParser(policy=policy.default).parsebytes(data[b"BODY[]"])
                    body = msg.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
                    if body is not None:
                        body.get_content()
                    seen[str(msg["Message-ID"])] = time.time()
                last = max(uids)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(10)
    client, append = _appender(env, user, list(mails))
    ticker = Ticker(n, rate, append)
    ticker.start()
    ticker.join()
    watcher.join(timeout=30)
    stop.set()
    client.logout()
    return [seen[m] - ticker.started_at[i] for i, m in enumerate(ids) if m in seen]


def drafted_times(factory, message_ids: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from consultant.models import Case, InboundMail

    with factory() as s:
        rows = s.execute(select(InboundMail.message_id, Case.drafted_at)
                         .join(Case, Case.first_mail_id == InboundMail.id)
                         .where(InboundMail.message_id.in_(message_ids),
                                Case.drafted_at.is_not(None))).all()
    return {mid: at.timestamp() for mid, at in rows}


def pipeline_latencies(env: Env, rt, user: str, rate: float, n: int, tag: str,  # type: ignore[no-untyped-def]
                       stall: float = 15.0) -> tuple[list[float], float]:
    """Run ``n`` arrivals at ``rate`` through the running pipeline ``rt``; (latencies, lag)."""
    ids, mails = zip(*(make_question(i, tag=tag) for i in range(n)), strict=True)
    client, append = _appender(env, user, list(mails))
    ticker = Ticker(n, rate, append)
    ticker.start()
    ticker.join()
    client.logout()
    done: dict[str, float] = {}
    last_change, count = time.monotonic(), -1
    while len(done) < n and time.monotonic() - last_change < stall:
        time.sleep(0.2)
        done = drafted_times(rt.factory, list(ids))
        if len(done) != count:
            count, last_change = len(done), time.monotonic()
    return [done[m] - ticker.started_at[i] for i, m in enumerate(ids) if m in done], ticker.behind


def latency_figures(prefix: str, rate: float, n: int, got: list[float], ceiling: list[float] | None,
                    lag: float) -> list[Figure]:
    figures = []
    for pct in (50, 95, 99):
        value = percentile(got, pct) if got else None
        base = percentile(ceiling, pct) if ceiling else None
        note = ""
        if pct == 50:
            note = f"{len(got)}/{n} drafted"
            if lag > 0.05:
                note += f"; APPEND fell {lag:.2f} s behind schedule"
        if pct == 95 and rate == 20:
            note = "goal < 1 s"
        figures.append(Figure(f"{prefix}.p{pct}@{rate:g}/s", value, "s", base,
                              higher_is_better=False, note=note))
    return figures


def run(env: Env, sizes: Sizes) -> list[Figure]:
    figures: list[Figure] = []
    user = "latency"
    empty_folder(env, user)
    env.flush_redis()
    settings = env.settings(env.new_database(), user)
    baselines = {rate: idle_baseline(env, rate, max(10, int(rate * sizes.latency_seconds / 2)))
                 for rate in sizes.rates}
    with pipeline(settings) as rt:
        time.sleep(1.0)  # the poller's first pass and IDLE
        for rate in sizes.rates:
            n = max(10, int(rate * sizes.latency_seconds))
            got, lag = pipeline_latencies(env, rt, user, rate, n, tag=f"lat{rate}")
            figures += latency_figures("latency", rate, n, got, baselines[rate], lag)
    return figures
