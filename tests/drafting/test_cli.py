"""`caseconsultant notes list|add|remove` through the real command-line entry point."""

from __future__ import annotations

import json

from consultant.cli import main
from tests.helpers import write_config


def run(capsys, config, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(["--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_notes_add_list_remove(plain_settings, tmp_path, capsys):  # type: ignore[no-untyped-def]
    config = write_config(plain_settings, tmp_path / "cc.toml")
    code, out, _ = run(capsys, config, "notes", "add", "99214/20610", "Modifier 25 goes on the E/M.",
                       "--by", "ann@cc.test")
    assert code == 0 and "note #1 saved on 20610 / 99214" in out
    assert run(capsys, config, "notes", "add", "J1885", "Check the vial size.", "--by", "bob")[0] == 0

    code, out, _ = run(capsys, config, "notes", "list", "20610", "--json")
    items = json.loads(out)
    assert [(n["subject"], n["author"], n["text"]) for n in items] == [
        ("20610+99214", "ann@cc.test", "Modifier 25 goes on the E/M.")]

    code, out, _ = run(capsys, config, "notes", "list")
    assert "J1885" in out and "20610 / 99214" in out

    assert run(capsys, config, "notes", "remove", "1", "--by", "ann@cc.test")[0] == 0
    assert json.loads(run(capsys, config, "notes", "list", "20610", "--json")[1]) == []
    removed = json.loads(run(capsys, config, "notes", "list", "--all", "--json")[1])
    assert [n["removed"] for n in removed] == [False, True]


def test_notes_errors_are_clear(plain_settings, tmp_path, capsys):  # type: ignore[no-untyped-def]
    config = write_config(plain_settings, tmp_path / "cc.toml")
    code, _, err = run(capsys, config, "notes", "add", "hello", "text", "--by", "ann")
    assert code == 1 and "'HELLO' is not a CPT, HCPCS or ICD-10-CM code" in err
    code, _, err = run(capsys, config, "notes", "remove", "42", "--by", "ann")
    assert code == 1 and "no note 42" in err
    code, _, err = run(capsys, config, "notes", "add", "20610+99214+99213", "x", "--by", "ann")
    assert code == 1 and "one code or one pair" in err
