"""``caseconsultant users add/token/list`` through the real command line entry point."""

from __future__ import annotations

import io
from pathlib import Path

from consultant.cli import main as cli
from consultant.review import auth
from tests.helpers import write_config


def test_users_add_then_token_then_login(settings, factory, tmp_path, capsys, monkeypatch):
    config = write_config(settings, tmp_path / "cc.toml")
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    assert cli(["--config", str(config), "users", "add", "Ann@CC.test", "--role", "admin",
                "--name", "Ann", "--credential", "CPC", "--password-file", str(secret)]) == 0
    assert "ann@cc.test: admin account ready" in capsys.readouterr().out
    assert auth.authenticate(factory, "ann@cc.test", "a long enough password", "127.0.0.1").user

    assert cli(["--config", str(config), "users", "token", "ann@cc.test", "--name", "billing"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("cc_") and auth.token_user(factory, token).email == "ann@cc.test"

    # Password from stdin when it is not a terminal.
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert cli(["--config", str(config), "users", "add", "bob@cc.test"]) == 0
    assert auth.authenticate(factory, "bob@cc.test", "another long password", "127.0.0.1").user

    assert cli(["--config", str(config), "users", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ann@cc.test" in listing and "consultant" in listing


def test_users_errors_are_clear(settings, tmp_path, capsys, monkeypatch):
    config = write_config(settings, tmp_path / "cc.toml")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli(["--config", str(config), "users", "add", "x@cc.test"]) == 1
    assert "password too short" in capsys.readouterr().err
    assert cli(["--config", str(config), "users", "token", "ghost@cc.test"]) == 1
    assert "no console user 'ghost@cc.test'" in capsys.readouterr().err


def test_console_command_serves_until_terminated(settings, tmp_path):
    """`caseconsultant console` as users run it: a process that serves until SIGTERM."""
    import signal
    import subprocess
    import sys

    import httpx

    from tests.servers import free_port, wait_for

    port = free_port()
    settings.console.port = port
    settings.console.secret_key = "subprocess-" + "s" * 32
    config = write_config(settings, tmp_path / "cc.toml")
    exe = Path(sys.executable).with_name("caseconsultant")
    proc = subprocess.Popen([str(exe), "--config", str(config), "console"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2),
                          timeout=30, what="the console to answer /healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        queue = httpx.get(f"http://127.0.0.1:{port}/queue", timeout=5)
        assert queue.status_code == 303 and queue.headers["location"].startswith("/login")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert f"console listening on http://127.0.0.1:{port}" in out
