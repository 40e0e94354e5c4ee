"""Small helpers shared by the end-to-end and crash tests."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from consultant.settings import Settings


def _toml_value(value: object) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(settings: Settings, path: Path) -> Path:
    """Write ``settings`` as a TOML file the CLI and subprocesses can load with --config."""
    lines: list[str] = []
    for section, values in settings.model_dump().items():
        if not isinstance(values, dict) or section == "codes":
            continue
        lines.append(f"[{section}]")
        tables = []
        for key, value in values.items():
            if isinstance(value, dict):
                tables.append((key, value))
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, table in tables:
            lines.append(f"[{section}.{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
