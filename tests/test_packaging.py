"""The built wheel, installed in a fresh venv outside the checkout, runs from any directory.

This is what an operator does (`pip install caseconsultant-*.whl`), so nothing here may reach
into the repository: the venv is new, the working directory is an empty temp dir, and
PYTHONPATH is cleared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from consultant import __version__
from tests.servers import REPO, free_port

pytestmark = pytest.mark.slow

# Build from a copy without the editable install's leftovers or local state.
IGNORE = shutil.ignore_patterns(".venv", ".git", "var", "build", "dist", "*.egg-info",
                                "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv with the wheel (and its dependencies) installed."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=IGNORE)
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(dist)],
                   check=True, capture_output=True, text=True, cwd=base)
    wheels = list(dist.glob("caseconsultant-*.whl"))
    assert len(wheels) == 1, wheels
    assert wheels[0].name.startswith(f"caseconsultant-{__version__}-")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])],
                   check=True, capture_output=True, text=True, cwd=base)
    shutil.rmtree(src)  # nothing may be found through the source tree
    return env_dir / "bin"


def run(bin_dir: Path, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CASECONSULTANT_") and k not in ("PYTHONPATH", "REDIS_URL")}
    env["CASECONSULTANT_SMTP_IN__PORT"] = str(free_port())
    return subprocess.run([str(bin_dir / "caseconsultant"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_wheel_runs_the_demo_and_every_command_from_any_directory(installed, tmp_path):
    version = run(installed, tmp_path, "--version")
    assert version.stdout.strip() == f"caseconsultant {__version__}"

    demo = run(installed, tmp_path, "demo", "--once", timeout=240)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "answer delivered to" in demo.stdout
    assert "[HCPCS 2026-01]" in demo.stdout  # the shipped excerpt was found and imported
    config = tmp_path / "var" / "demo" / "demo.toml"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Each command's help, and the read-only commands against the demo's database.
    parser_help = run(installed, elsewhere, "--help").stdout
    commands = ["init", "run", "poll", "smtpd", "worker", "console", "send-pending", "cases",
                "mail", "requesters", "outbox", "codes", "users", "notes"]
    for name in commands:
        assert name in parser_help, name
        result = run(installed, elsewhere, name, "--help")
        assert result.returncode == 0, (name, result.stderr)
    for args in (["cases", "list"], ["cases", "show", "1"], ["mail", "list"], ["outbox", "list"],
                 ["requesters", "show", "coder@example.org"], ["codes", "releases"],
                 ["codes", "show", "J1885"], ["codes", "search", "ketorolac", "--system", "HCPCS"]):
        result = run(installed, elsewhere, "--config", str(config), *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    # The bundled default config and a new database, in a directory of its own.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert run(installed, fresh, "init").returncode == 0
    assert (fresh / "var" / "caseconsultant.sqlite").is_file()
    assert run(installed, fresh, "cases", "list").stdout.strip() == "no cases"


def test_closed_pipe_exits_quietly(installed, tmp_path):
    assert run(installed, tmp_path, "demo", "--once", timeout=240).returncode == 0
    config = tmp_path / "var" / "demo" / "demo.toml"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    # `| head -1` at its harshest: the reader is gone before the first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([str(installed / "caseconsultant"), "--config", str(config), "codes",
                               "show", "99214", "--all"], cwd=tmp_path, env=env, stdout=write_end,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert done.stderr == b""
    assert done.returncode == 141  # as if killed by SIGPIPE, like other Unix tools
