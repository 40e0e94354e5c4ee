"""`caseconsultant demo` on a machine with no Redis and no mail server configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.servers import REPO, free_port

pytestmark = pytest.mark.slow


def test_demo_drafts_and_answers_a_question(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASECONSULTANT_")}
    env.update({"CASECONSULTANT_SMTP_IN__PORT": str(port), "PYTHONPATH": str(REPO)})
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "consultant.cli", "demo"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = "".join(lines)
    assert "machine draft" in out, out
    assert "answer delivered to" in out, out
    assert "In-Reply-To: <" in out and "[CC-1]" in out
    assert "J1885" in out
    assert list((tmp_path / "var" / "demo" / "outbox-maildir" / "new").iterdir())
    assert proc.returncode == 0
