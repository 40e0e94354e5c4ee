"""The benchmarks still run: a smoke run of the sections that start the pipeline.

No figure is checked (speed is never asserted: these machines are shared); only that each
section runs to its table and writes its results, as `make bench` needs.  An API change in the
pipeline once broke the ingest, latency and scale sections unnoticed until a bench run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests import servers

REPO = Path(__file__).resolve().parent.parent


def test_the_pipeline_sections_of_the_bench_run(tmp_path):
    shared = servers.require_shared()  # the ingest section reads the mail corpus
    if shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists():
        servers.unavailable("the bench needs Dovecot (apt-get install dovecot-imapd)")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "ingest", "latency",
         "--corpus-limit", "40", "--rates", "5", "--latency-seconds", "2",
         "--capacity-rates", "5", "--capacity-seconds", "2", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "CASECONSULTANT_SHARED": str(shared)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = {f["name"] for f in json.loads(out.read_text())}
    assert {"ingest.full(IMAP->disposition)", "ingest.floor(IMAP->disposition, floor task)",
            "latency.capacity(p95<1s)",
            "latency.floor.capacity(p95<1s)"} <= names, sorted(names)
    assert "FAILED" not in proc.stdout
