"""``[logging] format = "json"``: every line a long-running command writes to stderr is one
JSON record (the demo, and `run`: poller-less intake, console, sweeper and the three worker
processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.servers import free_port

RECORD_KEYS = {"time", "level", "logger", "message", "process", "thread"}


def json_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASECONSULTANT_")}
    env["CASECONSULTANT_LOGGING__FORMAT"] = "json"
    return env


def records(stderr: str) -> list[dict[str, object]]:
    """Each stderr line parsed as JSON; a line that is not JSON fails the test, naming it."""
    parsed = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line on stderr: {line!r}") from None
        assert isinstance(record, dict) and RECORD_KEYS <= set(record), line
        parsed.append(record)
    return parsed


def test_the_demo_logs_json_lines(tmp_path):
    done = subprocess.run([sys.executable, "-m", "consultant.cli", "-v", "demo", "--once"],
                          cwd=tmp_path, env=json_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    logged = records(done.stderr)
    assert len(logged) > 5
    assert {"DEBUG", "INFO"} <= {r["level"] for r in logged}
    assert "[demo] done" in done.stdout or "answer delivered" in done.stdout  # stdout stays text


def test_run_logs_json_lines_from_every_process(tmp_path):
    console_port, smtp_port = free_port(), free_port()
    config = tmp_path / "cc.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "cc.sqlite"}"\n'
                      f'[broker]\nurl = "sqla+sqlite:///{tmp_path / "broker.sqlite"}"\n'
                      f'[smtp_in]\nport = {smtp_port}\n[console]\nport = {console_port}\n'
                      f'[smtp_out]\nmaildir = "{tmp_path / "out"}"\n'
                      f'[privacy]\nkey_file = "{tmp_path / "raw-mail.keys"}"\n'
                      '[workers]\npool = "threads"\nintake_concurrency = 1\n'
                      'drafting_concurrency = 1\nsending_concurrency = 1\n', encoding="utf-8")
    cc = [sys.executable, "-m", "consultant.cli", "--config", str(config)]
    subprocess.run([*cc, "init"], env=json_env(), check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([*cc, "run"], cwd=tmp_path, env=json_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        # Up when the console answers and each queue's worker process says it is ready.
        while time.monotonic() < deadline:
            if sum(" ready." in line for line in list(lines)) >= 3 and _answers(console_port):
                break
            assert proc.poll() is None, "".join(lines)[-2000:]
            time.sleep(0.5)
        else:
            raise AssertionError("run did not come up: " + "".join(lines)[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    logged = records("".join(lines))
    assert sum(1 for r in logged if "ready" in str(r["message"])) >= 3
    assert len({r["process"] for r in logged}) >= 4  # the parent and three worker processes


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_a_bad_log_format_is_refused_by_name(tmp_path: Path):
    env = json_env() | {"CASECONSULTANT_LOGGING__FORMAT": "xml"}
    done = subprocess.run([sys.executable, "-m", "consultant.cli", "cases", "list"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "logging.format: Input should be 'text' or 'json' (got 'xml')" in done.stderr
