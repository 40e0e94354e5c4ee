"""Drug-unit arithmetic on real HCPCS descriptors."""

from __future__ import annotations

import pytest

from consultant.drafting.kb import MueFact
from consultant.drafting.units import billing_unit, units_for


@pytest.mark.parametrize(("descriptor", "label"), [
    ("Injection, ketorolac tromethamine, per 15 mg", "15 mg"),
    ("Injection, diphenhydramine hcl, up to 50 mg", "up to 50 mg"),
    ("Injection, vitamin b-12 cyanocobalamin, up to 1000 mcg", "up to 1,000 mcg"),
    ("Injection, onabotulinumtoxina, 1 unit", "1 units"),
    ("Injection, insulin, per 5 units", "5 units"),
    ("Unclassified drugs", None),
])
def test_billing_unit(descriptor: str, label: str | None) -> None:
    bu = billing_unit(descriptor)
    assert (bu.label() if bu else None) == label


def test_exact_division() -> None:
    calc = units_for("J1885", "Injection, ketorolac tromethamine, per 15 mg", 60, "mg", source="HCPCS")
    assert calc is not None and calc.units == 4
    assert calc.steps == ["60 mg ÷ 15 mg per unit = 4 units of J1885"]


def test_partial_unit_rounds_up_and_container_gives_jw() -> None:
    calc = units_for("J9035", "Injection, bevacizumab, 10 mg", 375, "mg", source="HCPCS",
                     container=(400, "mg"))
    assert calc is not None
    assert (calc.units, calc.jw_units, calc.modifier) == (38, 2, "JW")


def test_unit_conversion_and_dose_below_one_unit() -> None:
    calc = units_for("J3420", "Injection, vitamin b-12 cyanocobalamin, up to 1000 mcg", 1, "mg", source="H")
    assert calc is not None and calc.units == 1
    assert calc.steps[0].startswith("1 mg = 1,000 mcg ÷ up to 1,000 mcg per unit")
    small = units_for("J1200", "Injection, diphenhydramine hcl, up to 50 mg", 12.5, "mg", source="H")
    assert small is not None and small.units == 1


def test_mue_comparison_counts_discarded_units() -> None:
    mue = MueFact("J2550", 3, 3, None, "NCCI MUE practitioner 2026-04-01")
    calc = units_for("J2550", "Injection, promethazine hcl, up to 50 mg", 125, "mg", source="H",
                     mue=mue, discarded=(25, "mg"))
    assert calc is not None and (calc.units, calc.jw_units, calc.modifier) == (3, None, "JZ")
    over = units_for("J2550", "Injection, promethazine hcl, up to 50 mg", 200, "mg", source="H", mue=mue)
    assert over is not None and over.units == 4 and over.over_mue is True


def test_incompatible_units_are_left_to_the_consultant() -> None:
    assert units_for("J1885", "Injection, ketorolac tromethamine, per 15 mg", 2, "ml", source="H") is None
