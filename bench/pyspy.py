"""Sampling profiles of the bench's worker processes with py-spy (``--py-spy DIR``).

py-spy (PyPI; not a dependency of the service: ``pip install py-spy``) samples each worker
process from outside, so the workers run unmodified.  Every ``pipeline()`` of the run records
its workers into ``DIR``; at the end the samples are summed two ways and printed: by our own
function nearest the sampled frame (what of ours, callees included, took the time), and by the
library the sampled frame itself is in (SQLAlchemy, psycopg, Celery/kombu, email, Jinja2 ...).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# py-spy names files relative to their sys.path entry ("sqlalchemy/orm/session.py").
LIBRARIES = [
    ("sqlalchemy", "sqlalchemy/"), ("psycopg", "psycopg/"), ("celery", "celery/"),
    ("kombu", "kombu/"), ("redis", "redis/"), ("billiard", "billiard/"),
    ("email (stdlib)", "email/"), ("jinja2", "jinja2/"), ("markupsafe", "markupsafe/"),
    ("nh3", "nh3"), ("json (stdlib)", "json/"), ("re (stdlib)", "re/"), ("socket", "socket.py"),
    ("selectors", "selectors.py"), ("imapclient", "imapclient/"),
]


class Recorder:
    """``py-spy record`` attached to some processes until ``stop()``."""

    def __init__(self, out_dir: Path, pids: list[int], label: str) -> None:
        exe = str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            exe = shutil.which("py-spy") or "py-spy"
        out_dir.mkdir(parents=True, exist_ok=True)
        self.procs = [subprocess.Popen(
            # --gil: only samples where the worker holds the GIL, i.e. runs Python on the CPU;
            # without it a worker waiting on PostgreSQL or Redis in C is counted as busy.
            [exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
             "--nonblocking", "--gil", "-o", str(out_dir / f"{label}-{pid}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _frames(stack: str) -> list[tuple[str, str]]:
    """``func (file:line);...`` → [(func, file)], outermost first."""
    out = []
    for frame in stack.split(";"):
        func, _, rest = frame.partition(" (")
        out.append((func.strip(), rest.rsplit(":", 1)[0]))
    return out


def _ours(file: str) -> str | None:
    for top in ("consultant/", "workers/"):
        if file.startswith(top) or f"/{top}" in file:
            return top + file.split(top, 1)[1]
    return None


def summarise(out_dir: Path, top: int = 15) -> str:
    """A printable summary of every profile in ``out_dir``."""
    by_ours: Counter[str] = Counter()
    by_library: Counter[str] = Counter()
    total = 0
    for path in sorted(out_dir.glob("*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = _frames(stack)
            mine = [f"{func} ({where})" for func, file in frames if (where := _ours(file))]
            by_ours[mine[-1] if mine else "(not in our code: Celery/kombu loop)"] += n
            leaf = frames[-1][1] if frames else ""
            lib = next((name for name, needle in LIBRARIES
                        if leaf.startswith(needle) or f"/{needle}" in leaf), None)
            by_library[lib or ("ours" if _ours(leaf) else "other")] += n
    if not total:
        return f"py-spy: no samples in {out_dir}"
    lines = [f"py-spy: {total} samples of the worker processes ({out_dir})",
             "  by our nearest function (callees included):"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in by_ours.most_common(top)]
    lines.append("  by the library of the sampled frame:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in by_library.most_common(top)]
    return "\n".join(lines)
