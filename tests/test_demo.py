"""`caseconsultant demo` on a machine with no Redis and no mail server configured.

Expected facts are read from the CMS files in shared/data/cms with the csv module, not from the
product, and the demo's excerpt is checked to be exactly what scripts/make_demo_data.py makes
from those files.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import REPO, free_port, require_shared

pytestmark = pytest.mark.slow


def demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASECONSULTANT_")}
    env.pop("REDIS_URL", None)
    return env


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    return "".join(lines)


def mue_of(code: str) -> str:
    path = require_shared() / "data" / "cms" / "ncci_mue" / "MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"
    with path.open(encoding="latin-1", newline="") as fh:
        for row in csv.reader(fh):
            if row and row[0] == code:
                return row[1]
    raise AssertionError(f"{code} not in the MUE file")


def test_excerpt_is_what_the_script_makes_from_the_cms_files(tmp_path):
    cms = require_shared() / "data" / "cms"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_data.py"), str(cms),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    shipped = REPO / "consultant" / "demo_data"
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in shipped.iterdir() if p.is_file())
    for name in made:
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name
    assert sum((shipped / n).stat().st_size for n in made) < 300_000


def test_demo_answers_with_real_facts_on_a_taken_port(tmp_path):
    # The configured port is taken: the demo must say so and use another one.
    taken = socket.socket()
    taken.bind(("127.0.0.1", free_port()))
    taken.listen()
    port = taken.getsockname()[1]
    env = demo_env() | {"CASECONSULTANT_SMTP_IN__PORT": str(port), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "consultant.cli", "demo"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = read_until(proc, "Ctrl-C to stop")
        assert f"127.0.0.1:{port} is taken" in out, out
        assert "CASECONSULTANT_SMTP_IN__PORT" in out
        assert "machine draft" in out and "answer delivered to" in out, out
        assert "In-Reply-To: <" in out and "[CC-1]" in out
        # Real facts from the shipped excerpt, each citing its release.
        assert "Injection, ketorolac tromethamine, per 15 mg [HCPCS 2026-01]" in out, out
        assert f"J1885: MUE {mue_of('J1885')} units" in out, out
        assert "no HCPCS release loaded" not in out and "no MUE release" not in out
        assert list((tmp_path / "var" / "demo" / "outbox-maildir" / "new").iterdir())

        # The printed next steps run as printed, from another directory.
        commands = [line.strip() for line in out.splitlines() if line.strip().endswith(" cases list")]
        assert commands, out
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        listed = subprocess.run(shlex.split(commands[-1]), cwd=elsewhere, env=env,
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert re.search(r"^\s+1\s+sent\s+coder@example.org", listed.stdout, re.M), listed.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        taken.close()
    assert proc.returncode == 0


def test_short_mode_exits_after_the_answer(tmp_path):
    env = demo_env() | {"CASECONSULTANT_SMTP_IN__PORT": str(free_port()), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "consultant.cli", "demo", "--once"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answer delivered to" in done.stdout and "short mode" in done.stdout
    assert Path(tmp_path / "var" / "demo" / "demo.toml").is_file()
