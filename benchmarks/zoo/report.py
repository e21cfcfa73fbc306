"""The confusion table the zoo prints: one line a case, then the totals side by side."""

from __future__ import annotations

from typing import Any

from benchmarks.zoo.case import KINDS

_SHORT = {"warning": "W", "critical": "C", "info": "i"}


def _ours(row: dict[str, Any]) -> str:
    mine = row["ours"]
    if mine["error"]:
        return f"error {mine['error'][:40]}"
    found = [f"{k}:{_SHORT[s]}" for k, s in mine["findings"]]
    text = ", ".join(found) if found else "healthy"
    return f"[unknown] {text}" if mine.get("verdict") == "unknown" else text


def _case_line(row: dict[str, Any]) -> str:
    head = f"{row['name'][:40]:40s} {row['label'][:22]:22s}"
    if "ours" not in row:
        return f"{head} (no trace: {row.get('train_error')})"
    note = "" if row["verified"] else "  [unverified: left out]"
    base = ",".join(row["baseline"]["fired"]) or "-"
    return (
        f"{head} {row['ours']['mark']:11s} {row['baseline']['mark']:11s} "
        f"ours: {_ours(row)} | baseline: {base}{note}"
    )


def table(rows: list[dict[str, Any]], tot: dict[str, Any]) -> str:
    """The whole report as text."""
    lines = [
        f"{'case':40s} {'label':22s} {'ours':11s} {'baseline':11s} findings "
        "(W warning, C critical, i info)",
        "-" * 120,
        *(_case_line(r) for r in rows),
        "-" * 120,
        f"scored {tot['scored']} of {tot['cases']} cases "
        f"({tot['healthy']} healthy, {tot['pathological']} pathological); "
        f"left out: {', '.join(tot['left_out']) or 'none'}",
        "",
        f"{'':34s} {'gradientflow':>14s} {'SageMaker defaults':>20s}",
        _side("false alarms on healthy runs", tot, "false_alarms", tot["healthy"]),
        _side("pathological runs caught", tot, "hits", tot["pathological"]),
    ]
    for kind in KINDS:
        cell = tot["ours"]["per_kind"].get(kind)
        if cell:
            b = tot["baseline"]["per_kind"][kind]
            lines.append(
                f"  {kind:32s} {cell['hits']:>7d} / {cell['runs']:<4d} "
                f"{b['hits']:>11d} / {b['runs']:<4d}"
            )
    lines += [
        _side("rule crashes", tot, "errors", tot["scored"]),
        "",
        f"our false alarms by kind: {tot['ours']['false_alarm_kinds'] or 'none'}",
        f"baseline false alarms by rule: {tot['baseline']['false_alarm_rules'] or 'none'}",
    ]
    return "\n".join(lines)


def _side(title: str, tot: dict[str, Any], key: str, of: int) -> str:
    return f"{title:34s} {tot['ours'][key]:>7d} / {of:<4d} {tot['baseline'][key]:>11d} / {of:<4d}"
