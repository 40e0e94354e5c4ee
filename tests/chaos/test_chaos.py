"""Chaos: mails in through IMAP and SMTP while the poller, worker, sender and Redis are
SIGKILLed and restarted at random and PostgreSQL connections are cut (see ``harness``).

Short mode (the normal suite): 10 mails each way, about 20 s of chaos.  Long mode:
``make chaos`` sets ``CC_CHAOS_MAILS=200``.  Counts are printed (run with ``-s``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import func, select

from consultant.db import upgrade
from consultant.models import Case, InboundMail, Outbox
from consultant.outbox import send as outbox_send
from consultant.runtime import Runtime
from tests.chaos.harness import Chaos, free_ports
from tests.conftest import make_settings
from tests.helpers import write_config
from tests.servers import empty_mailbox, unavailable

pytestmark = pytest.mark.slow
MAILS = int(os.environ.get("CC_CHAOS_MAILS", "10"))
CHAOS_SECONDS = float(os.environ.get("CC_CHAOS_SECONDS", "20"))
SETTLE_TIMEOUT = 120 + MAILS  # seconds
USER = "erin"


def test_nothing_lost_nothing_doubled_under_chaos(tmp_path, postgres_url, imap_server, smtp_sink):
    if shutil.which("redis-server") is None:
        unavailable("chaos needs redis-server on PATH (apt-get install redis-server)")
    upgrade(postgres_url)
    empty_mailbox(imap_server, USER)
    redis_port, smtp_port = free_ports(2)
    settings = make_settings(postgres_url, tmp_path, imap={
        "host": imap_server.host, "port": imap_server.port, "ssl": False, "username": USER,
        "password": imap_server.users[USER], "sent_folder": "Sent", "poll_interval": 1,
        "max_backoff": 2}, smtp_in={"port": smtp_port},
        smtp_out={"maildir": "", "host": smtp_sink.host, "port": smtp_sink.port})
    settings.broker.url = f"redis://127.0.0.1:{redis_port}/0"
    settings.broker.visibility_timeout = 10
    config = write_config(settings, tmp_path / "chaos.toml")
    rt = Runtime(settings)
    chaos = Chaos(rt, config, postgres_url,
                  (imap_server.host, imap_server.port, USER, imap_server.users[USER]),
                  redis_port, smtp_port, tmp_path, seed=int(os.environ.get("CC_CHAOS_SEED", "13")))
    chaos.start_all()
    try:
        start = time.monotonic()
        threads = [threading.Thread(target=chaos.feed_imap, args=(MAILS,)),
                   threading.Thread(target=chaos.feed_smtp, args=(MAILS,)),
                   threading.Thread(target=chaos.approver),
                   threading.Thread(target=chaos.killer)]
        for thread in threads:
            thread.start()
        for feeder in threads[:2]:
            feeder.join()
        remaining = CHAOS_SECONDS - (time.monotonic() - start)
        if remaining > 0:
            time.sleep(remaining)
        chaos.stop_chaos.set()
        for thread in threads[2:]:
            thread.join()
        chaos.figures.seconds = time.monotonic() - start

        # Settle: everything runs undisturbed; a human settles what a kill left unknown.
        settle = time.monotonic()
        resolved = Counter[str]()
        while not chaos.settled(2 * MAILS):
            assert time.monotonic() - settle < SETTLE_TIMEOUT, "the work did not settle"
            resolved.update(_settle_needs_check(rt, smtp_sink))
            time.sleep(1)
        chaos.figures.settle_seconds = time.monotonic() - settle
    finally:
        chaos.stop_all()

    delivered = Counter(str(m["Message-ID"]) for m in
                        (BytesParser(policy=policy.default).parsebytes(x["raw"]) for x in smtp_sink.messages))
    with rt.factory() as session:
        mails = session.execute(select(InboundMail)).scalars().all()
        dispositions = Counter(m.disposition for m in mails)
        cases = session.execute(select(Case)).scalars().all()
        answers = session.execute(select(Outbox).where(Outbox.kind == "answer")).scalars().all()
        per_case = Counter(o.case_id for o in answers)
        opened = Counter(session.execute(select(Case.first_mail_id)).scalars())
        case_mails = session.execute(select(func.count(InboundMail.id)).where(
            InboundMail.disposition.in_(("case", "held_quota")))).scalar_one()
    rt.dispose()
    outcome = {
        "inbound mails stored": len(mails), "dispositions": dict(dispositions),
        "cases": len(cases), "case statuses": dict(Counter(c.status for c in cases)),
        "answers queued": len(answers), "answers delivered (distinct)": len(
            [o for o in answers if delivered[o.message_id]]),
        "answers delivered twice": sum(1 for o in answers if delivered[o.message_id] > 1),
        "needs_check settled by hand": dict(resolved),
    }
    print("\n" + chaos.figures.report(outcome))
    assert len(mails) == 2 * MAILS  # none lost, none stored twice
    assert None not in dispositions
    assert set(dispositions) <= {"case", "held_quota"}, dispositions  # all distinct questions
    assert max(opened.values()) == 1 and case_mails == len(cases) == 2 * MAILS
    assert all(c.status == "sent" for c in cases), Counter(c.status for c in cases)
    assert max(per_case.values()) == 1 and len(per_case) == len(cases)  # one answer per case
    assert all(delivered[o.message_id] == 1 for o in answers), "an answer lost or doubled"


def _settle_needs_check(rt: Runtime, sink) -> Counter[str]:  # type: ignore[no-untyped-def]
    """What the operator does with a needs_check row: look in the relay's log (here: the sink)
    and record it as sent, or send it again."""
    seen = {str(BytesParser(policy=policy.default).parsebytes(m["raw"])["Message-ID"])
            for m in sink.messages}
    done: Counter[str] = Counter()
    try:
        with rt.factory() as session:
            rows = session.execute(select(Outbox.id, Outbox.message_id).where(
                Outbox.status == "needs_check")).all()
        for outbox_id, message_id in rows:
            outbox_send.resolve(rt.factory, outbox_id, sent=message_id in seen, by="chaos-operator")
            done["confirmed sent" if message_id in seen else "resent"] += 1
    except Exception:  # noqa: BLE001 - retried on the next settle pass
        pass
    return done
