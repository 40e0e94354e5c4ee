"""The Celery application: configured once at start-up from CaseConsultant settings.

Nothing is configured at import.  A process configures the app once, when it starts, with the
settings it was started with: ``caseconsultant worker|run|demo|console|...`` call
:func:`configure`; ``celery -A workers.app worker|flower|inspect ... [--config FILE]`` does it
through the ``--config`` option this module adds to every ``celery`` command (without it,
``$CASECONSULTANT_CONFIG`` or the bundled default applies, read when Celery first needs its
configuration).

Three queues, so that no kind of work waits behind another: ``intake`` (classifying a stored
mail), ``drafting`` (looking codes up and drafting) and ``sending`` (SMTP).  An approved answer
therefore never waits behind a drafting backlog.  Each queue has its own workers and its own
concurrency (``[workers]`` in the config); ``caseconsultant worker --queue sending`` runs one.

JSON only, late acks: tasks take ids and call plain functions in ``consultant`` that are safe to
run twice, which is what makes redelivery after a worker died mid-task harmless.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import click
from celery import Celery, signals
from kombu import Exchange, Queue

from consultant.logs import setup_logging
from consultant.runtime import Runtime
from consultant.settings import Settings, load_settings

INTAKE, DRAFTING, SENDING = "intake", "drafting", "sending"
QUEUES = (INTAKE, DRAFTING, SENDING)
ROUTES = {
    "caseconsultant.process_mail": INTAKE,
    "caseconsultant.draft_case": DRAFTING,
    "caseconsultant.send_outbox": SENDING,
}

app = Celery("caseconsultant", include=["workers.tasks"])
# Celery's "current app" is thread-local: in a thread-pool worker (`run`, `demo`) the pool's
# threads fall back to a default app on amqp://localhost, and `self.retry()` publishes through
# it, so every retry (e.g. after an IntegrityError) was silently lost.  Make ours the default.
app.set_default()
app.user_options["preload"].add(click.Option(
    ["--config"], default=None, help="CaseConsultant TOML config file (default: "
    "$CASECONSULTANT_CONFIG or the bundled config/default.toml)"))
_lock = threading.Lock()
_runtime: Runtime | None = None


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's settings for CaseConsultant ``settings`` (a plain function: testable, no app)."""
    transport_options: dict[str, object] = {}
    if settings.broker.url.startswith("redis"):
        # Redelivery of unacked tasks after a crashed worker (acks_late) happens after this.
        timeout = settings.broker.visibility_timeout
        transport_options["visibility_timeout"] = timeout
        # kombu scans for such tasks only every interval x throttle seconds (100 s by default);
        # scan at a third of the timeout (at most every 10 s) so recovery follows the timeout.
        transport_options["unacked_restore_interval"] = max(1, min(10, timeout // 3))
        transport_options["unacked_restore_throttle"] = 1
    return {
        "broker_url": settings.broker.url,
        "result_backend": settings.broker.result_backend or None,
        "task_ignore_result": not settings.broker.result_backend,
        # JSON only: a pickled message from a compromised broker would run code in the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options,
        "worker_hijack_root_logger": False,
        # Each queue on its own exchange and routing key: a Queue without them would get the
        # default exchange and key (those of the intake queue), and every task would then be
        # delivered to all three queues.
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)
                        for name in QUEUES],
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
        "task_default_queue": INTAKE,
        "task_create_missing_queues": False,
    }


def configure(settings: Settings) -> Celery:
    """Configure the app and the process runtime for ``settings`` (at start-up; tests and
    commands given another --config call it again, which replaces both)."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.dispose()
        _runtime = Runtime(settings)
    app.conf.update(celery_config(settings))
    return app


def runtime() -> Runtime:
    """The runtime :func:`configure` built (tasks load their state through it)."""
    with _lock:
        if _runtime is None:
            raise RuntimeError("workers.app is not configured: call configure(settings) at start-up")
        return _runtime


@signals.setup_logging.connect
def _log_as_configured(loglevel: Any = None, **_: Any) -> None:
    """A Celery worker logs like every other CaseConsultant process (``[logging] format``, on
    stderr): with a receiver connected Celery leaves logging alone rather than installing its
    own handlers and formats (and redirecting print() into its logger)."""
    if isinstance(loglevel, int):
        level = loglevel
    else:
        level = logging.getLevelNamesMapping().get(str(loglevel or "INFO").upper(), logging.INFO)
    setup_logging(runtime().settings.logging.format, level)


@signals.user_preload_options.connect
def _configure_from_command_line(app: Celery, options: dict[str, Any], **_: Any) -> None:
    """``celery -A workers.app <command> --config FILE``."""
    if options.get("config") is None and _runtime is not None:
        return  # already configured from the environment, which is what no --config means
    configure(load_settings(options.get("config")))


@app.on_configure.connect
def _configure_on_first_use(sender: Celery, **_: Any) -> None:
    """``celery -A workers.app <command>`` without --config: Celery asks for its configuration
    before our preload option is seen; answer from the environment ($CASECONSULTANT_CONFIG)."""
    global _runtime
    with _lock:
        if _runtime is not None:
            return
        settings = load_settings()
        _runtime = Runtime(settings)
    # Not conf.update(): the configuration is being loaded right now; hand Celery its source.
    sender.config_from_object(celery_config(settings))
