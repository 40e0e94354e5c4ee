"""Tasks that exist only for the benchmarks, imported by bench workers (``--include``)."""

from __future__ import annotations

from workers.app import app


@app.task(name="bench.noop")
def noop(x: int) -> None:
    """The empty task: what any task costs on this app, broker and worker."""
    return None
