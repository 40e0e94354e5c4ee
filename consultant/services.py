"""Long-running components and the commands that start them (run, poll, smtpd, worker, demo)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from consultant.runtime import Runtime
from consultant.settings import ConfigError, ImapSettings, Settings

log = logging.getLogger(__name__)
# aiosmtpd logs every connection at INFO; keep its warnings only.
logging.getLogger("mail.log").setLevel(logging.WARNING)
SWEEP_INTERVAL = 30.0


def _enqueue_mail(mail_id: int) -> None:
    from workers.tasks import process_mail

    process_mail.delay(mail_id)


def _enqueue_send(outbox_id: int) -> None:
    from workers.tasks import send_outbox

    send_outbox.delay(outbox_id)


class WorkerThread:
    """A Celery worker (thread pool) inside this process, as ``run`` and ``demo`` use it."""

    def __init__(self, settings: Settings, concurrency: int = 2) -> None:
        from workers.app import app, configure

        configure(settings)
        self.worker = app.WorkController(
            pool_cls="threads", concurrency=concurrency, loglevel="WARNING",
            without_heartbeat=True, without_mingle=True, without_gossip=True,
            queues=["caseconsultant"],
        )
        self.thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.worker.stop(in_sighandler=False)
        self.thread.join(timeout=10)


class Sweeper:
    """Periodic safety net: reconcile sends, retry due answers, re-enqueue lost mails."""

    def __init__(self, rt: Runtime, interval: float = SWEEP_INTERVAL) -> None:
        self.rt = rt
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)

    def _loop(self) -> None:
        from consultant.sweep import sweep

        while not self.stopping.wait(self.interval):
            try:
                sweep(self.rt, _enqueue_mail, _enqueue_send)
            except Exception:  # noqa: BLE001 - keep sweeping; log why
                log.exception("sweep failed")

    def start(self) -> Sweeper:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


class PollerThread:
    """One mailbox's poller in its own thread (one per configured mailbox)."""

    def __init__(self, rt: Runtime, cfg: ImapSettings) -> None:
        from consultant.intake.imap import ImapPoller

        self.rt, self.cfg = rt, cfg
        self.poller = ImapPoller(cfg, rt.factory, _enqueue_mail, rt.settings.service.max_message_bytes)
        self.thread = threading.Thread(target=self._run, name=f"imap-poller {cfg.label}", daemon=True)

    def _run(self) -> None:
        from consultant.intake.lock import LockHeld, mailbox_lock

        cfg = self.cfg
        lost = threading.Event()
        while not self.poller.stopping:
            try:
                with mailbox_lock(self.rt.settings.broker.url, f"{cfg.label}/{cfg.folder}",
                                  on_lost=lost):
                    self.poller.run_forever()
            except LockHeld as exc:
                log.warning("%s; waiting", exc)
                self.poller._sleep(10)

    def start(self) -> PollerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.poller.stopping = True
        self.thread.join(timeout=5)


def start_pollers(rt: Runtime) -> list[Callable[[], None]]:
    """A poller thread per configured mailbox; returns their stop functions."""
    return [PollerThread(rt, cfg).start().stop for cfg in rt.settings.imap.all_mailboxes()]


def start_smtpd(rt: Runtime) -> Any:
    from consultant.intake.smtp import IntakeHandler, start_listener

    s = rt.settings
    handler = IntakeHandler(rt.factory, {s.service.address, *s.service.aliases}, _enqueue_mail,
                            s.service.max_message_bytes)
    return start_listener(handler, s.smtp_in.host, s.smtp_in.port, s.smtp_in.max_sessions)


def stop_requested() -> threading.Event:
    """An event set by SIGINT/SIGTERM (installed now, so an early Ctrl-C is not lost)."""
    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return done


def wait_forever(stops: list[Callable[[], None]], done: threading.Event | None = None) -> int:
    """Block until SIGINT/SIGTERM, then stop components in reverse order."""
    done = done or stop_requested()
    while not done.wait(0.5):
        pass
    print("stopping…", flush=True)
    for stop in reversed(stops):
        try:
            stop()
        except Exception:  # noqa: BLE001
            log.exception("error while stopping")
    return 0


def run_command(name: str, settings: Settings) -> int:
    rt = Runtime(settings)
    if name == "demo":
        from consultant.demo import run_demo

        return run_demo(settings)
    if name == "worker":
        from workers.app import app, configure

        configure(settings)
        app.worker_main(["worker", "--loglevel=INFO", "-Q", "caseconsultant"])
        return 0
    done = stop_requested()
    stops: list[Callable[[], None]] = []
    if name == "poll":
        if not settings.imap.enabled:
            raise ConfigError("`poll` needs an [imap] host (or CASECONSULTANT_IMAP__HOST)")
        stops.extend(start_pollers(rt))
    elif name == "smtpd":
        controller = start_smtpd(rt)
        print(f"SMTP intake listening on {settings.smtp_in.host}:{settings.smtp_in.port}", flush=True)
        stops.append(controller.stop)
    elif name == "console":
        from consultant.review.web import serve_in_thread

        stops.append(serve_in_thread(settings))
    elif name == "run":
        stops.append(WorkerThread(settings).start().stop)
        controller = start_smtpd(rt)
        stops.append(controller.stop)
        if settings.imap.enabled:
            stops.extend(start_pollers(rt))
        stops.append(Sweeper(rt).start().stop)
        try:
            from consultant.review.web import serve_in_thread
        except ModuleNotFoundError:
            serve_in_thread = None  # type: ignore[assignment]
        if serve_in_thread is not None:
            stops.append(serve_in_thread(settings))
        print(f"running: SMTP intake {settings.smtp_in.host}:{settings.smtp_in.port}"
              + (", IMAP " + ", ".join(m.label for m in settings.imap.all_mailboxes())
                 if settings.imap.enabled else "")
              + ", worker, sweeper. Ctrl-C to stop.", flush=True)
    else:
        raise ValueError(name)
    return wait_forever(stops, done)
