"""Long-running components and the commands that start them (run, poll, smtpd, worker, console)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from consultant.runtime import Runtime
from consultant.settings import ConfigError, ImapSettings, Settings

log = logging.getLogger(__name__)
# aiosmtpd logs every connection at INFO; keep its warnings only.
logging.getLogger("mail.log").setLevel(logging.WARNING)
SWEEP_INTERVAL = 30.0
# Raw mail past its retention period is purged this often by `run` (and at start).
PURGE_INTERVAL = 3600.0


def _enqueue_mail(mail_id: int) -> None:
    from workers.tasks import process_mail

    process_mail.delay(mail_id)


def _enqueue_send(outbox_id: int) -> None:
    from workers.tasks import send_outbox

    send_outbox.delay(outbox_id)


class WorkerThread:
    """One Celery worker (thread pool) in this process, serving all three queues, as the demo
    and the benchmarks use it.  It does not keep the queues apart (one pool serves them all):
    ``run`` and ``worker`` start :class:`WorkerProcesses` instead."""

    def __init__(self, settings: Settings, concurrency: int = 2) -> None:
        from workers.app import QUEUES, app, configure

        configure(settings)
        self.worker = app.WorkController(
            pool_cls="threads", concurrency=concurrency, loglevel="WARNING",
            without_heartbeat=True, without_mingle=True, without_gossip=True,
            queues=list(QUEUES),
        )
        self.thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.worker.stop(in_sighandler=False)
        self.thread.join(timeout=10)


class WorkerProcesses:
    """One ``caseconsultant worker --queue Q`` child process per queue, each with its own pool
    (``[workers] pool`` and ``<queue>_concurrency``): a drafting backlog never holds up
    sending.  Processes rather than threads because Celery keeps a worker's queue selection on
    its app, so workers of different queues cannot share a process.  A child that exits is
    logged as an error and started again; stopping sends SIGTERM (Celery's warm shutdown)."""

    def __init__(self, settings: Settings, queues: Sequence[str] = ()) -> None:
        from workers.app import QUEUES

        if not settings.source:
            raise ConfigError("worker processes need the settings as a file (--config)")
        self.config = settings.source
        self.queues = list(queues or QUEUES)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()
        self.monitor = threading.Thread(target=self._watch, name="worker-monitor", daemon=True)

    def _spawn(self, queue: str) -> None:
        # The same interpreter and settings file; the environment (CASECONSULTANT_* overrides
        # included) is inherited.
        self.procs[queue] = subprocess.Popen(
            [sys.executable, "-m", "consultant.cli", "--config", self.config, "worker",
             "--queue", queue])

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            for queue, proc in list(self.procs.items()):
                if proc.poll() is not None and not self.stopping.is_set():
                    log.error("the %s worker (pid %s) exited with status %s; starting it again",
                              queue, proc.pid, proc.returncode)
                    self._spawn(queue)

    def start(self) -> WorkerProcesses:
        for queue in self.queues:
            self._spawn(queue)
        self.monitor.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.monitor.join(timeout=5)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for queue, proc in self.procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("the %s worker (pid %s) did not stop in 30 s; killing it", queue, proc.pid)
                proc.kill()
                proc.wait()


class Sweeper:
    """Periodic safety net: reconcile sends, retry due answers, re-enqueue lost mails."""

    def __init__(self, rt: Runtime, interval: float = SWEEP_INTERVAL) -> None:
        self.rt = rt
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)

    def _loop(self) -> None:
        import time

        from consultant.privacy.retention import purge
        from consultant.sweep import sweep

        last_purge = 0.0
        while not self.stopping.wait(self.interval):
            try:
                sweep(self.rt, _enqueue_mail, _enqueue_send)
            except Exception:  # noqa: BLE001 - keep sweeping; log why
                log.exception("sweep failed")
            if time.monotonic() - last_purge >= PURGE_INTERVAL or not last_purge:
                last_purge = time.monotonic()
                try:
                    done = purge(self.rt.factory, self.rt.settings.privacy)
                    if done.mails or done.audit_events:
                        log.info("retention: purged %d raw mail(s), %d audit event(s)",
                                 done.mails, done.audit_events)
                except Exception:  # noqa: BLE001 - keep running; log why
                    log.exception("retention purge failed")

    def start(self) -> Sweeper:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


class PollerThread:
    """One mailbox's poller in its own thread (one per configured mailbox)."""

    def __init__(self, rt: Runtime, cfg: ImapSettings,
                 enqueue: Callable[[int], None] = _enqueue_mail) -> None:
        from consultant.intake.imap import ImapPoller

        self.rt, self.cfg = rt, cfg
        self.poller = ImapPoller(cfg, rt.factory, enqueue, rt.settings.service.max_message_bytes)
        self.thread = threading.Thread(target=self._run, name=f"imap-poller {cfg.label}", daemon=True)

    def _run(self) -> None:
        from consultant.intake.lock import LockHeld, LockLost, mailbox_lock

        cfg = self.cfg
        while not self.poller.stopping:
            lost = threading.Event()

            def check_lock(_result: object, lost: threading.Event = lost) -> None:
                # After each poll: a poller whose lock was taken over stops before the next.
                if lost.is_set():
                    raise LockLost(f"{cfg.label}/{cfg.folder}: another poller took the lock")

            try:
                with mailbox_lock(self.rt.settings.broker.url, f"{cfg.label}/{cfg.folder}",
                                  on_lost=lost):
                    self.poller.run_forever(on_poll=check_lock)
            except (LockHeld, LockLost) as exc:
                log.warning("%s; waiting", exc)
                self.poller.disconnect()
                self.poller._sleep(10)

    def start(self) -> PollerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.poller.stopping = True
        self.thread.join(timeout=5)


def start_pollers(rt: Runtime, enqueue: Callable[[int], None] = _enqueue_mail,
                  ) -> list[Callable[[], None]]:
    """A poller thread per configured mailbox; returns their stop functions.  ``enqueue``
    hands each stored mail on (the benchmarks' floor measurement gives its own task)."""
    return [PollerThread(rt, cfg, enqueue).start().stop for cfg in rt.settings.imap.all_mailboxes()]


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


def run_worker(settings: Settings, queues: Sequence[str]) -> int:
    """``caseconsultant worker [--queue Q ...]``: one queue runs as a plain Celery worker (its
    pool and size from ``[workers]``), the way the systemd units run it; several (or none: all
    three) run as one child process per queue."""
    from workers.app import app, configure

    configure(settings)
    if len(queues) == 1:
        queue = queues[0]
        app.worker_main(["worker", "--loglevel=INFO", "-Q", queue, "-n", f"{queue}@%h",
                         f"--pool={settings.workers.pool}",
                         f"--concurrency={settings.workers.concurrency(queue)}"])
        return 0
    done = stop_requested()
    workers = WorkerProcesses(settings, queues).start()
    print(f"workers running for queues {', '.join(workers.queues)} (one process each). "
          "Ctrl-C to stop.", flush=True)
    return wait_forever([workers.stop], done)


def run_command(name: str, settings: Settings) -> int:
    from workers.app import configure

    # The one place a long-running process configures Celery: whatever it enqueues goes to
    # the broker of the settings it was started with.
    configure(settings)
    rt = Runtime(settings)
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
        stops.append(WorkerProcesses(settings).start().stop)
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
              + ", workers (intake, drafting, sending), sweeper. Ctrl-C to stop.", flush=True)
    else:
        raise ValueError(name)
    return wait_forever(stops, done)
