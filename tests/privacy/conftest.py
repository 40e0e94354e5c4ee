"""The console served by uvicorn on a free port, its outbox pointed at an aiosmtpd sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consultant.db import make_engine, make_session_factory, upgrade
from consultant.privacy.crypto import load_keys
from consultant.review import auth
from consultant.review.web.server import ConsoleServer
from tests.conftest import make_settings
from tests.review.conftest import CONSULTANT, PASSWORD
from tests.review.test_browser import Live


@pytest.fixture
def served(tmp_path, smtp_sink) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cc.sqlite'}"
    upgrade(url)
    settings = make_settings(url, tmp_path, smtp_out={"maildir": "", "host": smtp_sink.host,
                                                      "port": smtp_sink.port},
                             console={"host": "127.0.0.1", "secret_key": "e2e-" + "k" * 32})
    engine = make_engine(url, keys=load_keys(settings.privacy))
    factory = make_session_factory(engine)
    auth.add_user(factory, CONSULTANT, PASSWORD, name="Jane Coder", credential="CPC")
    server = ConsoleServer(settings, factory, port=0, dispatch=lambda effects: None).start()
    try:
        yield Live(settings, factory, server.url, smtp_sink)
    finally:
        server.stop()
        engine.dispose()
