"""The Celery application.  Configured from CaseConsultant settings, JSON only, late acks.

Run a worker the usual way: ``celery -A workers.app worker`` (or ``caseconsultant worker``).
Tasks are thin: they take ids, and call plain functions in ``consultant`` that are safe to run
twice; that is what makes ``acks_late`` (redelivery after a worker dies mid-task) harmless.
"""

from __future__ import annotations

import threading

from celery import Celery

from consultant.runtime import Runtime
from consultant.settings import Settings, load_settings

app = Celery("caseconsultant", include=["workers.tasks"])
# Celery's "current app" is thread-local: in a thread-pool worker (`run`, `demo`) the pool's
# threads fall back to a default app on amqp://localhost, and `self.retry()` publishes through
# it, so every retry (e.g. after an IntegrityError) was silently lost.  Make ours the default.
app.set_default()
_lock = threading.Lock()
_runtime: Runtime | None = None


def configure(settings: Settings) -> Celery:
    """(Re)configure the app and the process runtime for ``settings``."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.dispose()
        _runtime = Runtime(settings)
    transport_options: dict[str, object] = {}
    if settings.broker.url.startswith("redis"):
        # Redelivery of unacked tasks after a crashed worker (acks_late) happens after this.
        timeout = settings.broker.visibility_timeout
        transport_options["visibility_timeout"] = timeout
        # kombu scans for such tasks only every interval x throttle seconds (100 s by default);
        # scan at a third of the timeout (at most every 10 s) so recovery follows the timeout.
        transport_options["unacked_restore_interval"] = max(1, min(10, timeout // 3))
        transport_options["unacked_restore_throttle"] = 1
    app.conf.update(
        broker_url=settings.broker.url,
        result_backend=settings.broker.result_backend or None,
        task_ignore_result=not settings.broker.result_backend,
        # JSON only: a pickled message from a compromised broker would run code in the worker.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        worker_hijack_root_logger=False,
        task_default_queue="caseconsultant",
    )
    return app


def runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
        return _runtime


configure(load_settings())
