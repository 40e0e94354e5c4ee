"""Import progress: a tqdm bar on a terminal, plain lines in a log, nothing with --quiet."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import termios

from consultant.codes.files import Progress


def test_on_a_pipe_or_log_progress_is_plain_lines():
    out = io.StringIO()
    progress = Progress("import mue", stream=out, interval=0)
    progress(1_000, 250)
    progress(2_500, 1000)
    progress.close()
    progress.close()  # once only
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("import mue: 1,000 rows, 25% of file, ")
    assert lines[-1].startswith("import mue: 2,500 rows, 100% of file, ")
    assert len(lines) == 3 and "\r" not in out.getvalue()


def test_a_log_gets_a_line_only_every_interval_and_at_the_end():
    out = io.StringIO()
    progress = Progress("import ptp", stream=out, interval=3600)
    for n in range(100):
        progress(n * 10, n * 10)
    progress.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("import ptp: 990 rows, 99% of file")


def test_on_a_terminal_progress_is_a_tqdm_bar():
    master, slave = pty.openpty()
    # A terminal 100 columns wide (a fresh pty is 0 x 0, where the bar has no room at all).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with os.fdopen(slave, "w") as terminal:
        progress = Progress("import hcpcs", stream=terminal)
        progress(9_006, 500)
        progress(9_006, 1000)
        progress.close()
        terminal.flush()
        shown = ""
        while select.select([master], [], [], 0.5)[0]:
            shown += os.read(master, 65536).decode()
    os.close(master)
    assert "import hcpcs: 100% of file|" in shown and "9,006 rows" in shown
    assert "\r" in shown  # redrawn in place
