"""docs/architecture.md holds: its layering table matches the import graph, and its three worked
examples (a statistic, a rule, a remedy) work as written.

Each example's file is written into a copy of src/, its registration lines are inserted where
the page says (an import after ``from __future__``, an entry at the end of the named tuple), and
a fresh Python process on that copy checks that the monitor records the new column, that
``diagnose`` reports the new finding and that the registry holds the new remedy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.test_layering import PKG, SRC, import_graph

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
BLOCK = re.compile(r"^```python (file|register)=(\S+)\n(.*?)^```$", re.S | re.M)
ENTRY = re.compile(r"^(\s+.*?),?\s*# in (\w+)$")


def blocks() -> list[tuple[str, str, str]]:
    return [(m[1], m[2], m[3]) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def layers() -> dict[str, int]:
    """Module prefix (``gradientflow.diagnosis``) -> its layer, from the page's table."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- layers:begin -->")[1].split("<!-- layers:end -->")[0]
    out: dict[str, int] = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue
        for name in re.findall(r"`([\w.]+)`", cells[1]):
            out["gradientflow" if name == "gradientflow" else f"gradientflow.{name}"] = int(
                cells[0]
            )
    return out


def layer_of(module: str, table: dict[str, int]) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in table and (n > 1 or module == "gradientflow"):
            return table[prefix]
    return None


def test_every_module_has_a_layer_and_no_import_goes_up() -> None:
    table = layers()
    assert len(table) > 25 and max(table.values()) >= 10
    graph = import_graph()
    missing = sorted(m for m in graph if layer_of(m, table) is None)
    assert missing == [], f"modules not in docs/architecture.md's layering table: {missing}"
    upward = [
        f"{m} (layer {layer_of(m, table)}) imports {t} (layer {layer_of(t, table)})"
        for m, targets in graph.items()
        for t in targets
        if (layer_of(t, table) or 0) > (layer_of(m, table) or 0)
    ]
    assert upward == []


def test_the_layer_check_sees_an_upward_import() -> None:
    table = layers()
    assert layer_of("gradientflow.diagnosis.rules.vanishing", table) == 5
    assert layer_of("gradientflow.trace", table) == 4
    assert layer_of("gradientflow", table) != layer_of("gradientflow.errors", table)
    assert (layer_of("gradientflow.report.html", table) or 0) > (
        layer_of("gradientflow.trace", table) or 0
    )


def register(path: Path, lines: str) -> None:
    """Insert imports after ``from __future__``, entries at the end of the named tuple."""
    text = path.read_text(encoding="utf-8").splitlines()
    for line in lines.splitlines():
        if line.startswith(("from ", "import ")):
            at = text.index("from __future__ import annotations") + 1
            text.insert(at, line)
            continue
        entry = ENTRY.match(line)
        assert entry is not None, f"a registration line without '# in NAME': {line!r}"
        start = next(i for i, t in enumerate(text) if t.startswith(entry[2]))
        end = next(i for i in range(start, len(text)) if text[i] == ")")
        text.insert(end, entry[1] + ",")
    path.write_text("\n".join(text) + "\n", encoding="utf-8")


CHECK = r"""
import json, torch, gradientflow
from gradientflow.diagnosis import diagnose
from gradientflow.diagnosis.rules import default_remedies
from gradientflow.remedies import REGISTRY
from gradientflow.trace import Trace

out = {"file": gradientflow.__file__}
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with gradientflow.watch(model, opt) as mon:
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        expected = [max(float(p.grad.abs().max()) for p in m.parameters()) for m in model[::2]]
        opt.step()
out["probe"] = mon.trace.metrics["max_abs_grad"].tolist()
out["expected"] = expected
t = Trace.build(["fc0", "fc1"], steps=[0, 10, 20], rel_update=[[0.5, 1e-3]] * 3)
out["findings"] = [f.to_dict() for f in diagnose(t).findings]
calm = Trace.build(["a"], steps=[0], rel_update=[[1e-3]])
out["quiet"] = [f.kind for f in diagnose(calm).findings]
out["remedies"] = default_remedies()["big_updates"]
remedy = REGISTRY["add_layernorm"]
new = remedy.apply(model)
out["layers"] = [type(m).__name__ for m in new]
out["same_output_shape"] = list(new(torch.ones(2, 3)).shape)
out["untouched"] = [type(m).__name__ for m in model]
out["not_applicable"] = remedy.applicable(torch.nn.Linear(2, 2))
print(json.dumps(out))
"""


def test_the_three_examples_work_as_written(tmp_path: Path) -> None:
    found = blocks()
    assert [kind for kind, _, _ in found] == ["file", "register"] * 3
    src = tmp_path / "src"
    shutil.copytree(PKG, src / "gradientflow", ignore=shutil.ignore_patterns("__pycache__"))
    for kind, rel, code in found:
        path = tmp_path / rel
        if kind == "file":
            assert not path.exists(), f"{rel} exists already: the example must be new"
            path.write_text(code, encoding="utf-8")
        else:
            assert len(code.strip().splitlines()) <= 2  # one entry (and its import)
            register(path, code)
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(src))  # the copy ran, not the checkout
    probe = out["probe"]
    assert len(probe) == 3 and len(probe[-1]) == 2
    for got, want in zip(probe[-1], out["expected"], strict=True):
        assert abs(got - want) <= 1e-6 * want
    (finding,) = [f for f in out["findings"] if f["kind"] == "big_updates"]
    assert finding["layers"] == ["fc0"] and finding["severity"] == "warning"
    assert finding["evidence"]["median_rel_update"] == {"fc0": 0.5}
    assert "layer 'fc0' moves by 0.5 of its weight norm" in finding["message"]
    assert "big_updates" not in out["quiet"]
    assert out["remedies"] == ["lower_lr", "clip_gradients"]
    assert out["layers"] == ["Linear", "LayerNorm", "ReLU", "Linear"]
    assert out["same_output_shape"] == [2, 1] and out["untouched"] == ["Linear", "ReLU", "Linear"]
    assert "nn.Sequential" in out["not_applicable"]


def test_the_examples_are_not_in_the_package() -> None:
    for kind, rel, _ in blocks():
        if kind == "file":
            assert not (SRC.parent / rel).exists(), rel
