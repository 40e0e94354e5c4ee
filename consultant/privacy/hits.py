"""A detection hit and the small protocol every rule follows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from consultant.privacy.kinds import Kind


@dataclass(frozen=True)
class Hit:
    """One suspected identifier: which rule found it, what kind it is, where it is."""

    rule: str
    kind: Kind
    start: int
    end: int

    def as_json(self) -> dict[str, object]:
        # Never the value: hits are stored on the case and shown in the console.
        return {"rule": self.rule, "kind": str(self.kind), "start": self.start, "end": self.end}


class Rule(Protocol):
    """A named detection rule (read-only attributes: rules are frozen dataclasses)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> Kind: ...

    @property
    def description(self) -> str: ...

    def find(self, text: str) -> Iterator[Hit]: ...
