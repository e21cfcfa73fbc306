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


# ------------------------------------------------------------------ the table for docs/
BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"


def markdown(results: dict[str, Any], held_out: dict[int, dict[str, Any]] | None = None) -> str:
    """The totals of a results JSON as a Markdown table (ours beside the baseline), then one
    line of totals per held-out seed (``held_out``: seed -> its results JSON)."""
    tot = results["totals"]
    ours, base = tot["ours"], tot["baseline"]
    h, p = tot["healthy"], tot["pathological"]
    lines = [
        f"Generated from `benchmarks/zoo/results.json` ({results.get('generated', '?')}) by "
        "`python -m benchmarks.zoo.report --doc docs/diagnosis.md`.",
        "",
        "| | gradientflow | SageMaker Debugger defaults |",
        "|---|---:|---:|",
        f"| false alarms on healthy runs | {ours['false_alarms']} / {h} | "
        f"{base['false_alarms']} / {h} |",
        f"| pathological runs caught (primary kind) | {ours['hits']} / {p} | "
        f"{base['hits']} / {p} |",
    ]
    for kind in KINDS:
        cell = ours["per_kind"].get(kind)
        if cell:
            b = base["per_kind"][kind]
            lines.append(
                f"| &nbsp;&nbsp;{kind} | {cell['hits']} / {cell['runs']} | "
                f"{b['hits']} / {b['runs']} |"
            )
    lines.append(f"| rule crashes | {ours['errors']} / {tot['scored']} | {base['errors']} |")
    if held_out:
        lines += ["", "Held-out seeds (the rules were adjusted looking at the seed-0 runs):", ""]
        lines += [_held_out_line(seed, held_out[seed]) for seed in sorted(held_out)]
    return "\n".join(lines)


def _held_out_line(seed: int, results: dict[str, Any]) -> str:
    tot = results["totals"]
    ours, base = tot["ours"], tot["baseline"]
    h, p = tot["healthy"], tot["pathological"]
    left = (
        f"; left out (outcome not verified): {', '.join(tot['left_out'])}"
        if tot["left_out"]
        else ""
    )
    return (
        f"* seed {seed} (`results-seed-{seed}.json`, {results.get('generated', '?')}): "
        f"false alarms {ours['false_alarms']} / {h}, caught {ours['hits']} / {p}; SageMaker "
        f"defaults {base['false_alarms']} / {h}, {base['hits']} / {p}{left}"
    )


def update_doc(
    text: str, results: dict[str, Any], held_out: dict[int, dict[str, Any]] | None = None
) -> str:
    """``text`` with the part between the zoo-table markers replaced by :func:`markdown`."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the document has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{markdown(results, held_out)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Print the Markdown table of ``results.json`` (with the ``results-seed-S.json`` beside it
    as held-out lines), or write it into ``--doc``."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo.report")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--doc", type=Path, help="a Markdown file with the zoo-table markers")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    held_out = {
        int(f.stem.removeprefix("results-seed-")): json.loads(f.read_text())
        for f in args.results.parent.glob("results-seed-*.json")
    }
    if args.doc is None:
        print(markdown(results, held_out))
    else:
        args.doc.write_text(update_doc(args.doc.read_text(), results, held_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
