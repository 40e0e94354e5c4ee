"""Programs the crash tests run as subprocesses and kill with SIGKILL at an exact point.

The kill is real (the process dies without cleanup); only *when* it happens is arranged, by a
hook on the component's own seams (the poller's ``before_flag``, the sender's
``after_accept`` and ``before_record``, or a SQLAlchemy flush event), so no test code lives
in the product.

    python -m tests.crash_scripts poller_before_flag CONFIG
    python -m tests.crash_scripts worker_mid_case CONFIG MARKER
    python -m tests.crash_scripts sender_after_accept CONFIG OUTBOX_ID
    python -m tests.crash_scripts sender_before_record CONFIG OUTBOX_ID
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    kind, config = argv[0], argv[1]
    from consultant.runtime import Runtime
    from consultant.settings import load_settings

    settings = load_settings(config)
    rt = Runtime(settings)
    if kind == "poller_before_flag":
        from consultant.intake.imap import ImapPoller
        from workers.app import configure
        from workers.tasks import process_mail

        configure(settings)
        poller = ImapPoller(settings.imap, rt.factory, process_mail.delay,
                            settings.service.max_message_bytes)
        poller.before_flag = lambda uid: die()
        poller.poll_once()
        return 0
    if kind == "worker_mid_case":
        marker = Path(argv[2])
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        from consultant.models import Case
        from workers.app import app, configure

        @event.listens_for(Session, "after_flush")
        def _kill_once(session, flush_context):  # type: ignore[no-untyped-def]
            # The new case is flushed but not committed: the worker dies mid-transaction.
            if not marker.exists() and any(isinstance(o, Case) for o in session.new | session.dirty):
                marker.write_text("killed")
                die()

        configure(settings)
        app.worker_main(["worker", "--pool=solo", "--loglevel=WARNING", "-Q", "intake,drafting,sending",
                         "--without-heartbeat", "--without-mingle", "--without-gossip"])
        return 0
    if kind in ("sender_after_accept", "sender_before_record"):
        outbox_id = int(argv[2])
        from consultant.outbox.send import send_one

        def hook(claimed):  # type: ignore[no-untyped-def]
            die()

        # after_accept: the relay said 250; nothing recorded, no Sent copy yet.
        # before_record: the Sent copy exists; the 'sent' record never commits.
        hooks = {"after_accept": hook} if kind == "sender_after_accept" else {"before_record": hook}
        send_one(rt.factory, settings, outbox_id, rt.transport(), rt.sent_folder, **hooks)
        return 0
    raise SystemExit(f"unknown crash kind {kind}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
