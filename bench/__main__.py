"""Run the benchmarks, print the table, write bench/results.json and bench/machine.json.

``python -m bench [--quick | --long] [--only SECTION ...]``.

Sizes can also be set from the environment (``BENCH_QUICK=1``, ``BENCH_LONG=1``,
``BENCH_RATES=5,20,50``, ``BENCH_CAPACITY_RATES=10,25,50,100``, ``BENCH_CASE_SIZES=1000,100000``,
``BENCH_MAILBOX_SIZES=1000,50000``, ``BENCH_LATENCY_SECONDS``, ``BENCH_CAPACITY_SECONDS``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from bench.common import Env, Figure, Sizes, Unavailable

HERE = Path(__file__).resolve().parent
MODULES = {"stages": "bench.stages", "ingest": "bench.ingest", "latency": "bench.latency",
           "queue": "bench.queue_ceiling", "send": "bench.send", "codes": "bench.bench_codes",
           "scale": "bench.scale", "drafting": "bench.drafting"}
SECTIONS = list(MODULES)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                   help="smaller sizes everywhere (about 2-3 minutes)")
    p.add_argument("--long", action="store_true", default=os.environ.get("BENCH_LONG") == "1",
                   help="sustained latency: 60 s per rate and per capacity step (make bench-long)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--rates", type=_ints, default=os.environ.get("BENCH_RATES"),
                   help="arrival rates for latency, mails/s (default 5,20,50)")
    p.add_argument("--latency-seconds", type=float, default=os.environ.get("BENCH_LATENCY_SECONDS"),
                   help="seconds of arrivals per rate")
    p.add_argument("--capacity-rates", type=_ints, default=os.environ.get("BENCH_CAPACITY_RATES"),
                   help="arrival rates stepped through for the capacity, mails/s")
    p.add_argument("--capacity-seconds", type=float,
                   default=os.environ.get("BENCH_CAPACITY_SECONDS"),
                   help="seconds of arrivals per capacity step")
    p.add_argument("--case-sizes", type=_ints, default=os.environ.get("BENCH_CASE_SIZES"),
                   help="stored cases for the scale runs (default 1000,100000)")
    p.add_argument("--mailbox-sizes", type=_ints, default=os.environ.get("BENCH_MAILBOX_SIZES"),
                   help="mails already in the mailbox for the scale runs (default 1000,50000)")
    p.add_argument("--with-ptp", action="store_true", default=os.environ.get("BENCH_PTP") == "1",
                   help="codes: also import the 2.5M-row NCCI PTP file (several minutes)")
    p.add_argument("--corpus-limit", type=int, default=0, help="use only the first N corpus mails")
    p.add_argument("--output", type=Path, default=HERE / "results.json")
    p.add_argument("--py-spy", type=Path, metavar="DIR",
                   help="sample the worker processes with py-spy into DIR and print a summary")
    return p.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick_sizes() if args.quick else Sizes.long_sizes() if args.long else Sizes()
    for attr in ("rates", "capacity_rates", "case_sizes", "mailbox_sizes"):
        value = getattr(args, attr)
        if value:
            setattr(sizes, attr, _ints(value) if isinstance(value, str) else value)
    if args.latency_seconds:
        sizes.latency_seconds = float(args.latency_seconds)
    if args.capacity_seconds:
        sizes.capacity_seconds = float(args.capacity_seconds)
    if args.corpus_limit:
        sizes.corpus_limit = args.corpus_limit
    return sizes


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def print_table(figures: list[Figure]) -> None:
    width = max([len(f.name) for f in figures] + [10])
    print(f"\n{'figure':<{width}}  {'value':>10}  {'unit':<7}  {'ceiling':>10}  {'ratio':>6}  note")
    print("-" * (width + 60))
    for f in figures:
        ratio = f.ratio
        print(f"{f.name:<{width}}  {fmt(f.value):>10}  {f.unit:<7}  {fmt(f.ceiling):>10}  "
              f"{'-' if ratio is None else f'{ratio:.2f}':>6}  {f.note}")


def bench_codes_figures(with_ptp: bool, env: Env | None) -> list[Figure]:
    """The code-data figures of ``bench/bench_codes.py`` on SQLite and, with the servers, on
    PostgreSQL (the production database; its search and lookup paths differ)."""
    try:
        module = importlib.import_module("bench.bench_codes")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.bench_codes":
            raise
        return [Figure("codes", None, "-", note="bench/bench_codes.py not present yet")]
    if not with_ptp:
        print("codes: without the NCCI PTP import (--with-ptp or BENCH_PTP=1 to include it)")
    # The 2.5M-row PTP import (and lookups against it) take minutes: only with --with-ptp.
    backends: list[tuple[str, str | None]] = [("SQLite", None)]
    if env is not None:
        backends.append(("PostgreSQL", env.new_database()))
    figures = []
    for label, url in backends:
        print(f"codes on {label} ...", flush=True)
        rows = module.run(url, with_ptp=with_ptp)
        # The module computes its own ratios (it knows which direction is better): keep them.
        figures += [Figure(f"{row['name']} [{label}]", row.get("value"), str(row.get("unit", "")),
                           row.get("ceiling"), note=str(row.get("note", "")),
                           fixed_ratio=row.get("ratio")) for row in rows]
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    sections = args.only or SECTIONS
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("celery").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from bench import common, machine

    common.PROFILE_DIR = args.py_spy

    figures: list[Figure] = []
    failed: list[str] = []
    started = time.monotonic()
    env = None
    needs_servers = True  # every section, codes included (its PostgreSQL figures), needs them
    try:
        if needs_servers:
            try:
                env = Env()
            except Unavailable as exc:
                print(f"bench: cannot start the servers: {exc}", file=sys.stderr)
                return 2
        facts = machine.facts(env)
        print("machine:", json.dumps(facts, indent=1))
        print(f"sizes: {sizes}", flush=True)
        for name in sections:
            t0 = time.monotonic()
            print(f"\n== {name} ==", flush=True)
            try:
                if name == "codes":
                    got = bench_codes_figures(args.with_ptp, env)
                else:
                    got = importlib.import_module(MODULES[name]).run(env, sizes)
            except Exception:  # noqa: BLE001 - report, and go on with the other sections
                traceback.print_exc()
                failed.append(name)
                got = [Figure(name, None, "-", note="FAILED (traceback above)")]
            print_table(got)
            print(f"({name}: {time.monotonic() - t0:.0f} s)", flush=True)
            figures += got
    finally:
        if env is not None:
            env.close()
    facts["seconds"] = round(time.monotonic() - started)
    facts["sizes"] = vars(sizes)
    print("\n== all figures ==")
    print_table(figures)
    print(f"\n{len(figures)} figures in {facts['seconds']} s; written to {args.output}")
    if args.py_spy is not None:
        from bench.pyspy import summarise

        print("\n" + summarise(args.py_spy))
    args.output.write_text(json.dumps([f.as_json() for f in figures], indent=1) + "\n")
    (args.output.parent / "machine.json").write_text(json.dumps(facts, indent=1) + "\n")
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
