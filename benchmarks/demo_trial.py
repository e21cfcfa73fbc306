"""The README's remedies table, generated from a trial run (never typed in).

``python benchmarks/demo_trial.py run`` trains the demo (20-layer sigmoid MLP on digits) and
each remedy for 20 epochs on the same batches, over three seeds, and keeps the table in
``docs/trials/demo.json``; ``python benchmarks/demo_trial.py render`` rewrites the block between
``<!-- trial:demo:begin -->`` and ``<!-- trial:demo:end -->`` in README.md from that file
(``--check``: exit 1 if the README would change; tests/trial/test_docs.py does the same).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "trials" / "demo.json"
README = ROOT / "README.md"
REMEDIES = (
    "swap_activation:relu",
    "swap_activation:selu",
    "add_batchnorm",
    "add_residual",
    "layerwise_pretrain",
    "reinit:lsuv",
)
BEGIN, END = "<!-- trial:demo:begin -->", "<!-- trial:demo:end -->"


def run() -> None:
    """Train the demo trial (about 2 minutes on two cores) and write ``RESULTS``."""
    from gradientflow.cli import main

    out = RESULTS.parent / "demo-run"
    args = ["trial", "--remedies", ",".join(REMEDIES), "--steps", "440", "--seeds", "0,1,2"]
    status = main([*args, "--out", str(out)])
    if status:
        raise SystemExit(status)
    (out / "trial.json").replace(RESULTS)
    out.rmdir()


def _sci(x: float) -> str:
    return f"{x:.2g}" if 1e-2 <= abs(x) < 1e3 else f"{x:.1e}".replace("e-0", "e-")


def render(doc: dict[str, Any]) -> str:
    """The Markdown table of a trial document (``TrialTable.to_dict()``)."""
    lines = [
        "| model | lr | test accuracy, mean (min–max, 3 seeds) "
        "| ‖g first‖ / ‖g last‖ at step 0 | still found |",
        "|---|---|---|---|---|",
    ]
    for row in doc["rows"]:
        accs = [float(s["metric"]) for s in row.get("per_seed", [])] or [float(row["metric"])]
        name = "20-layer sigmoid MLP (the demo)" if row["name"] == "baseline" else row["name"]
        name = name if row["name"] == "baseline" else f"`{name}`"
        found = ", ".join(row.get("findings") or []) or "-"
        lines.append(
            f"| {name} | {row['lr']:g} | {float(row['metric']):.3f} "
            f"({min(accs):.3f}–{max(accs):.3f}) | {_sci(float(row['grad_ratio']))} | {found} |"
        )
    return "\n".join(lines)


def updated_readme(text: str, doc: dict[str, Any]) -> str:
    block = f"{BEGIN}\n{render(doc)}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    return pattern.sub(lambda _: block, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("step", choices=["run", "render"])
    p.add_argument("--check", action="store_true", help="render: exit 1 if README would change")
    args = p.parse_args(argv)
    if args.step == "run":
        run()
    doc = json.loads(RESULTS.read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8")
    new = updated_readme(text, doc)
    if args.check:
        return int(new != text)
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
