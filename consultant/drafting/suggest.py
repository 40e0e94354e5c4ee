"""The suggested answer's conventions: a consultant prompt is in square brackets and starts with
"Consultant:", so it is easy to find, and approval refuses a text that still holds one.  The
prompts' wording lives in the reply templates (``replies/_part.txt.j2``)."""

from __future__ import annotations

PROMPT_PREFIX = "[Consultant:"


def has_prompt(text: str) -> bool:
    """Does an answer still contain an unfilled consultant prompt?"""
    return PROMPT_PREFIX in text
