"""deploy/: every systemd unit starts a command that exists, with arguments it accepts."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from consultant.cli import build_parser
from tests.servers import REPO

UNITS = sorted((REPO / "deploy").glob("*.service"))


def exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    return shlex.split(parser["Service"]["ExecStart"].replace("%i", "intake"))


def test_every_component_has_a_unit():
    names = {u.name for u in UNITS}
    assert {"caseconsultant-poll.service", "caseconsultant-smtpd.service",
            "caseconsultant-console.service", "caseconsultant-worker@.service",
            "caseconsultant-sweep.service", "caseconsultant-flower.service"} <= names
    target = (REPO / "deploy" / "caseconsultant.target").read_text()
    for queue in ("intake", "drafting", "sending"):
        assert f"caseconsultant-worker@{queue}.service" in target


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_command_parses(unit):
    argv = exec_start(unit)
    program = Path(argv[0]).name
    if program == "caseconsultant":
        args = build_parser().parse_args(argv[1:])  # exits (SystemExit) on a bad argument
        assert args.handler is not None
    else:
        assert program == "celery" and argv[1:4] == ["-A", "workers.app", "flower"], argv
