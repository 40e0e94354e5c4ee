"""Jinja2 environment for reply templates: operator directory first, bundled templates second.

HTML templates (``*.html.j2``) autoescape everything: requester text and code descriptors end
up inside them, and neither is trusted markup.  Plain-text templates (``*.txt.j2``) do not
escape (escaping would put ``&amp;`` into a text mail) and are never rendered as HTML.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from consultant.settings import TEMPLATE_ROOT

BUNDLED = TEMPLATE_ROOT


@lru_cache(maxsize=8)
def environment(operator_dir: str = "") -> Environment:
    loaders = []
    if operator_dir:
        loaders.append(FileSystemLoader(str(Path(operator_dir))))
    loaders.append(FileSystemLoader(str(BUNDLED)))
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_pair(name: str, context: dict[str, Any], operator_dir: str = "") -> tuple[str, str]:
    """Render ``replies/<name>.txt.j2`` and ``replies/<name>.html.j2``: (text, html)."""
    env = environment(operator_dir)
    text = env.get_template(f"replies/{name}.txt.j2").render(**context)
    # The HTML twin may show the rendered text as ``text``: passed as a variable (never included
    # as a template), so autoescape applies to it — requester words inside it stay text.
    html = env.get_template(f"replies/{name}.html.j2").render(**context, text=text)
    return text, html


def render_text(name: str, context: dict[str, Any], operator_dir: str = "") -> str:
    """Render only ``replies/<name>.txt.j2`` (for pieces that have no HTML twin, e.g. the footer)."""
    return environment(operator_dir).get_template(f"replies/{name}.txt.j2").render(**context)


def render_html(name: str, context: dict[str, Any], operator_dir: str = "") -> str:
    """Render only ``replies/<name>.html.j2`` (autoescaped)."""
    return environment(operator_dir).get_template(f"replies/{name}.html.j2").render(**context)
