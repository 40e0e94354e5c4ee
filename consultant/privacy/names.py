"""Person names: the US Census Bureau's name frequency lists, as the ``names`` package ships them.

The lists (1990 census: 5,494 first names, 88,799 surnames) decide whether a capitalised word
after a weak cue ("for patient Mary ...", "Regarding John Smith") is a name.  They are read once
per process from the package's data files: no list of ours, nothing downloaded at run time.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


def _read(name: str) -> frozenset[str]:
    text = resources.files("names").joinpath(name).read_text(encoding="ascii")
    return frozenset(line.split(None, 1)[0].lower() for line in text.splitlines() if line.strip())


@cache
def first_names() -> frozenset[str]:
    return _read("dist.male.first") | _read("dist.female.first")


@cache
def surnames() -> frozenset[str]:
    return _read("dist.all.last")


def is_first_name(word: str) -> bool:
    return word.lower() in first_names()


def is_surname(word: str) -> bool:
    return word.lower() in surnames()
