"""Human-readable text for ``codes show`` (the JSON form is the ``lookup`` dict itself)."""

from __future__ import annotations

from typing import Any


def _ptp_lines(block: dict[str, Any]) -> list[str]:
    lines = []
    for side, label in (("as_column_1", "as column 1"), ("as_column_2", "as column 2")):
        info = block[side]
        lines.append(f"  PTP {label}: {info['in_force']} edits in force ({block['source']})"
                     + (f", first {info['shown']} shown" if info["shown"] < info["in_force"] else ""))
        for e in info["edits"]:
            lines.append(f"    {e['column_1']} / {e['column_2']}  modifier indicator {e['modifier_indicator']}"
                         f"  {e['rationale'] or ''}")
    return lines


def render_facts(f: dict[str, Any]) -> str:
    """Plain text with each fact's source release in brackets."""
    out = [f"{f['code']}  {f['system']}  [{f.get('source') or 'no release'}]"]
    out.append(f"  {f.get('description') or f.get('note') or '(no descriptor)'}")
    if f.get("copyright"):
        out.append(f"  {f['copyright']}")
    if f["system"] == "ICD-10-CM":
        state = "billable" if f["billable"] else ("needs a 7th character" if f["needs_7th_character"] else "header (not billable)")
        out.append(f"  {state}")
        for note in f["notes"]:
            out.append(f"  {note['label']} (at {note['from']}):")
            out += [f"    - {n}" for n in note["notes"]]
        if f.get("seven_chr_def"):
            out.append("  7th characters: " + "; ".join(f"{k} = {v}" for k, v in f["seven_chr_def"].items()))
        for child in f.get("children", []):
            out.append(f"    child {child['code']} {child['description']}" + ("" if child["billable"] else " (not billable)"))
        return "\n".join(out)
    if f.get("coverage"):
        cov = f["coverage"]
        out.append(f"  coverage {cov['code']}: {cov['meaning']}; pricing "
                   + ", ".join(f"{p['code']} {p['meaning']}" for p in f.get("pricing", [])))
        out.append(f"  added {f['add_date']}, last action {f['action_code']} {f['action_effective_date']}"
                   + (f", TERMINATED {f['term_date']}" if f["terminated"] else ""))
    if f.get("billing_unit"):
        bu = f["billing_unit"]
        out.append(f"  billing unit: {bu['amount']} {bu['unit']}")
    for m in f.get("mue", []):
        out.append(f"  MUE {m['value']} (MAI {m['mai']}: {m['mai_meaning']}) {m['rationale'] or ''} [{m['source']}]")
    addon = f.get("addon")
    if addon and addon["is_addon"]:
        out.append(f"  add-on code; primaries: {', '.join(addon['primaries']) or 'contractor defined'} [{addon['source']}]")
    if addon and addon["primary_of_addons"]:
        out.append(f"  primary code for {addon['primary_of_addons']} add-on edits [{addon['source']}]")
    for block in f.get("ptp", []):
        out += _ptp_lines(block)
    return "\n".join(out)
