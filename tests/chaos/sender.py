"""The sender as the chaos test runs it: the sweeper loop alone, in its own process.

    python -m tests.chaos.sender CONFIG

Each pass reconciles rows a killed sender left in ``sending``, sends due answers (in groups,
as the send task does), and
re-enqueues mails whose task was lost (what ``caseconsultant run``'s sweeper does every 30 s),
here every second so the chaos run is short.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta

from consultant.outbox.send import send_batch
from consultant.runtime import Runtime
from consultant.settings import load_settings
from consultant.sweep import sweep

# A mail without a disposition this long after arrival lost its task (broker killed): enqueue
# it again.  Long enough that a busy worker's backlog is not enqueued twice over.
MAIL_GRACE_SECONDS = 20


def main(config: str) -> None:
    from workers.app import configure
    from workers.tasks import process_mail

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(config)
    configure(settings)
    rt = Runtime(settings)
    transport = rt.transport()

    def send(outbox_id: int) -> None:
        # As the send_outbox task does (workers.tasks): the row, then further due rows in
        # groups of [smtp_out] send_group, so a SIGKILL can land in the middle of a group.
        send_batch(rt.factory, settings, transport, rt.sent_folder, first_id=outbox_id,
                   limit=200, seconds=1.0)

    while True:
        try:
            sweep(rt, process_mail.delay, send, mail_grace=timedelta(seconds=MAIL_GRACE_SECONDS))
        except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL gone: next pass
            logging.warning("sweep failed: %s: %s", type(exc).__name__, exc)
        time.sleep(1.0)


if __name__ == "__main__":
    main(sys.argv[1])
