"""Serving the console with uvicorn in a background thread (``console`` and ``run`` commands)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from consultant.settings import Settings

log = logging.getLogger(__name__)


class ConsoleServer:
    """uvicorn running ``create_app(settings)`` in a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session] | None = None,
                 port: int | None = None, **app_kwargs: object) -> None:
        import uvicorn

        from consultant.review.web.app import create_app

        self.app = create_app(settings, factory, **app_kwargs)  # type: ignore[arg-type]
        self.host = settings.console.host
        trusted = settings.console.trusted_proxies
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise; without a
        # configured proxy it must believe no one (the login lockout keys on the address).
        config = uvicorn.Config(self.app, host=self.host,
                                port=settings.console.port if port is None else port,
                                log_level="warning", access_log=False, lifespan="off",
                                # No log_config: uvicorn's records go to our handler, in the
                                # configured [logging] format, not through its own formatter.
                                log_config=None,
                                proxy_headers=bool(trusted),
                                forwarded_allow_ips=list(trusted) if trusted else None)
        self.server = uvicorn.Server(config)
        # Signal handlers belong to the main thread (services.wait_forever installs its own).
        self.server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.run, name="console-http", daemon=True)

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for srv in servers:
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ConsoleServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the console could not start on {self.host}:"
                                   f"{self.server.config.port} (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError("the console did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(settings: Settings) -> Callable[[], None]:
    """Start the console on settings.console.host:port; return the function that stops it."""
    server = ConsoleServer(settings).start()
    print(f"console listening on {server.url}", flush=True)
    return server.stop
