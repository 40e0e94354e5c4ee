"""Benchmarks: every figure printed beside a ceiling measured in the same run on the same data.

Run with ``make bench`` (or ``python -m bench [--quick] [--only SECTION ...]``).  Servers are
started the way the tests start them (``tests/servers.py``: ``$REDIS_URL`` / ``$DATABASE_URL``
first, else a private redis-server / PostgreSQL / Dovecot in a temp directory).  Results go to
``bench/results.json`` (a list of ``{name, value, unit, ceiling, ratio}``, ratio oriented so that
higher is better) and machine facts to ``bench/machine.json``.  Nothing here is a test: speed is
printed, never asserted.
"""
