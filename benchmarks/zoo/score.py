"""The zoo's score step: diagnose every cached trace with gradientflow's rules and with the
baseline, and count false alarms on healthy runs and hits per kind on pathological ones.

* a **false alarm** is a finding of severity warning or critical on a healthy run (for the
  baseline: any rule firing);
* a **hit** is a finding of the case's primary kind at warning or above (for the baseline: a
  fired rule whose kinds, :data:`baseline.RULE_KINDS`, include the primary kind);
* cases whose outcome did not confirm their label (``verified`` false) or whose training
  failed are listed but left out of the totals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.zoo.baseline import RULE_KINDS, baseline
from benchmarks.zoo.case import KINDS
from benchmarks.zoo.train import LABEL_FILE, TRACE_DIR

import gradientflow
from gradientflow import Trace


def ours(trace: Trace) -> dict[str, Any]:
    """gradientflow's verdict: every finding's kind and severity, and those at warning+."""
    try:
        diag = gradientflow.diagnose(trace)
    except Exception as exc:  # a crash of the rules is a result too
        return {"error": repr(exc), "findings": [], "alarms": []}
    found = [(f.kind, f.severity) for f in diag.findings]
    alarms = sorted({f.kind for f in diag.at_least("warning")})
    verdict = getattr(diag, "verdict", None)
    return {"error": None, "findings": found, "alarms": alarms, "verdict": verdict}


def mark(label: str, alarms: list[str], error: str | None = None) -> str:
    """ok / FALSE-ALARM on a healthy run, hit / miss on a pathological one."""
    if error:
        return "error"
    if label == "healthy":
        return "FALSE-ALARM" if alarms else "ok"
    return "hit" if label in alarms else "miss"


def score_trace(label: str, trace: Trace) -> dict[str, Any]:
    """Score one trace with both sets of rules."""
    mine = ours(trace)
    fired = {rule: detail for rule, detail in baseline(trace).items() if detail is not None}
    base_kinds = sorted({k for rule in fired for k in RULE_KINDS[rule]})
    base_alarms = sorted(fired) if label == "healthy" else base_kinds
    return {
        "ours": {**mine, "mark": mark(label, mine["alarms"], mine["error"])},
        "baseline": {
            "fired": fired,
            "kinds": base_kinds,
            "mark": mark(label, base_alarms),
        },
    }


def score_cache(cache: Path, names: list[str]) -> list[dict[str, Any]]:
    """Score every case in ``names`` found in ``cache`` (in that order)."""
    rows = []
    for name in names:
        folder = cache / name
        if not (folder / LABEL_FILE).is_file():
            continue
        record = json.loads((folder / LABEL_FILE).read_text())
        row: dict[str, Any] = {k: record.get(k) for k in ("name", "label", "family", "check")}
        row["verified"] = bool(record.get("verified")) and not record.get("error")
        row["train_error"] = record.get("error")
        row["seconds"] = record.get("seconds")
        if (folder / TRACE_DIR).is_dir():
            row.update(score_trace(record["label"], Trace.load(folder / TRACE_DIR)))
        rows.append(row)
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """False alarms on verified healthy runs; hits and misses per kind on verified sick ones."""
    scored = [r for r in rows if r["verified"] and "ours" in r]
    healthy = [r for r in scored if r["label"] == "healthy"]
    sick = [r for r in scored if r["label"] != "healthy"]
    out: dict[str, Any] = {
        "cases": len(rows),
        "scored": len(scored),
        "left_out": sorted(r["name"] for r in rows if r not in scored),
        "healthy": len(healthy),
        "pathological": len(sick),
    }
    for who in ("ours", "baseline"):
        per_kind = {}
        for kind in KINDS:
            runs = [r for r in sick if r["label"] == kind]
            if runs:
                hits = sum(r[who]["mark"] == "hit" for r in runs)
                per_kind[kind] = {"runs": len(runs), "hits": hits}
        out[who] = {
            "false_alarms": sum(r[who]["mark"] == "FALSE-ALARM" for r in healthy),
            "hits": sum(r[who]["mark"] == "hit" for r in sick),
            "misses": sum(r[who]["mark"] != "hit" for r in sick),
            "errors": sum(r[who]["mark"] == "error" for r in scored),
            "per_kind": per_kind,
        }
    out["ours"]["false_alarm_kinds"] = _count(k for r in healthy for k in r["ours"]["alarms"])
    out["baseline"]["false_alarm_rules"] = _count(
        k for r in healthy for k in r["baseline"]["fired"]
    )
    return out


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items()))
