"""Log set-up for every command: plain text lines, or one JSON object a line (``[logging] format``).

JSON lines are for log shippers (journald to Loki, Elasticsearch, CloudWatch): each record is
one object with ``time``, ``level``, ``logger``, ``message``, the process and thread, any
``extra`` fields, and a traceback as one ``exc_info`` string, never several lines.
python-json-logger renders them.  Everything is on stderr; stdout stays the commands' output.
"""

from __future__ import annotations

import logging
import sys
import threading

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "_caseconsultant_handler"


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        # time: ISO 8601 in UTC with microseconds (what shippers parse without a pattern).
        return JsonFormatter("%(levelname)s %(name)s %(message)s %(process)d %(threadName)s",
                             timestamp="time",
                             rename_fields={"levelname": "level", "name": "logger",
                                            "threadName": "thread"})
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(fmt: str, level: int) -> None:
    """Log to stderr in ``fmt`` ("text" or "json") from ``level`` up.

    Called again (once the settings are read, or by another in-process command) it replaces
    its own handler.  When something else already configured the root logger (an embedding
    program, pytest's capture) it leaves it alone, as ``logging.basicConfig`` would.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _OURS, False)]
    if len(ours) != len(root.handlers):
        return
    for old in ours:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    # Warnings and a thread's uncaught exception would otherwise be written to stderr as bare
    # text, breaking one-record-a-line output.
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("caseconsultant").error(
        "uncaught exception in thread %s", name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback))
