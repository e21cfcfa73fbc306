"""docs/notebook.md runs: its ``python`` cells in order, in one namespace, like a notebook.

What a cell prints is compared with the ``text`` block right under it (doctest's checker:
``...`` matches anything, ``<BLANKLINE>`` an empty line). An object a cell ends with is shown
the way Jupyter shows it: its ``_repr_html_()``, which must be one self-contained, scoped
fragment. With ``GRADIENTFLOW_NOTEBOOK_HTML=DIR`` set, each shown object's HTML is also written
to ``DIR/cell-N.html`` (how docs/images/notebook-*.png were made, see docs/notebook.md).
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


def cells(text: str) -> list[tuple[str, str | None]]:
    """``(code, expected output or None)`` for each python block, in order."""
    blocks = [(m.group(1), m.group(2), m.start(), m.end()) for m in _BLOCK.finditer(text)]
    out: list[tuple[str, str | None]] = []
    for i, (lang, body, _, end) in enumerate(blocks):
        if lang != "python":
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        follows = nxt is not None and nxt[0] == "text" and not text[end : nxt[2]].strip()
        out.append((body, nxt[1] if follows and nxt is not None else None))
    return out


def run_cell(code: str, namespace: dict[str, Any]) -> tuple[str, Any]:
    """Execute ``code``; what it printed, and the value of its last expression (or None)."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    value = None
    with contextlib.redirect_stdout(out):
        exec(compile(tree, "<notebook cell>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<notebook cell>", "eval"), namespace)
    return out.getvalue(), value


def check_output(got: str, want: str) -> None:
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS
    if not checker.check_output(want, got, flags):
        example = doctest.Example("cell", want)
        raise AssertionError(checker.output_difference(example, got, flags))


def check_shown(value: Any) -> str:
    html = value._repr_html_()
    assert isinstance(html, str)
    assert html.startswith("<div class='gradientflow-view'><style>"), html[:80]
    assert html.endswith("</div>")
    lowered = html.lower()
    assert "<script" not in lowered and "http://" not in lowered and "https://" not in lowered
    return html


def test_the_cell_reader_pairs_cells_with_their_output() -> None:
    text = "```python\nprint(1)\n```\n\n```text\n1\n```\n```python\nx = 2\n```\n```text\nno\n```\n"
    assert cells(text) == [("print(1)\n", "1\n"), ("x = 2\n", "no\n")]
    assert cells("```python\na\n```\nwords\n```text\nb\n```\n") == [("a\n", None)]
    assert run_cell("x = 1\nprint(x)\nx + 1", {}) == ("1\n", 2)
    with pytest.raises(AssertionError):
        check_output("Verdict: healthy\n", "Verdict: UNHEALTHY...\n")


@pytest.mark.slow
def test_the_notebook_runs_and_says_what_it_claims() -> None:
    found = cells(NOTEBOOK.read_text(encoding="utf-8"))
    assert len(found) >= 8
    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    shown: list[str] = []
    html_dir = os.environ.get("GRADIENTFLOW_NOTEBOOK_HTML")
    for n, (code, want) in enumerate(found):
        got, value = run_cell(code, namespace)
        if want is not None:
            check_output(got, want)
        if value is not None:
            html = check_shown(value)
            shown.append(type(value).__name__)
            if html_dir:
                page = f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{html}"
                Path(html_dir, f"cell-{n}-{type(value).__name__}.html").write_text(
                    page + "</body></html>\n", encoding="utf-8"
                )
    assert shown == ["Preflight", "Diagnosis", "Finding", "Trace", "TrialTable"]
