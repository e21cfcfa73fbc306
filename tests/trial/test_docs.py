"""The README's remedies table is what benchmarks/demo_trial.py renders from the committed run."""

from __future__ import annotations

import json

from benchmarks import demo_trial


def test_the_readme_remedies_table_is_generated_from_the_committed_trial() -> None:
    doc = json.loads(demo_trial.RESULTS.read_text(encoding="utf-8"))
    text = demo_trial.README.read_text(encoding="utf-8")
    assert demo_trial.updated_readme(text, doc) == text, "run: python benchmarks/demo_trial.py render"


def test_the_committed_trial_is_the_demo_with_every_listed_remedy() -> None:
    doc = json.loads(demo_trial.RESULTS.read_text(encoding="utf-8"))
    names = {row["name"] for row in doc["rows"]}
    assert names == {"baseline", *demo_trial.REMEDIES}
    base = next(r for r in doc["rows"] if r["name"] == "baseline")
    assert len(base["per_seed"]) == 3 and base["metric"] < 0.2  # the demo does not learn
    relu = next(r for r in doc["rows"] if r["name"] == "swap_activation:relu")
    assert min(s["metric"] for s in relu["per_seed"]) > 0.85  # and ReLU + He does


def test_render_is_a_markdown_table_with_a_row_per_candidate() -> None:
    doc = {
        "rows": [
            {"name": "baseline", "lr": 0.05, "metric": 0.1, "grad_ratio": 1.7e-16, "findings": []},
            {
                "name": "add_residual",
                "lr": 0.05,
                "metric": 0.94,
                "grad_ratio": 4.7e-3,
                "findings": ["vanishing"],
                "per_seed": [{"metric": 0.93}, {"metric": 0.95}],
            },
        ]
    }
    lines = demo_trial.render(doc).splitlines()
    assert lines[2] == "| 20-layer sigmoid MLP (the demo) | 0.05 | 0.100 (0.100–0.100) | 1.7e-16 | - |"
    assert lines[3] == "| `add_residual` | 0.05 | 0.940 (0.930–0.950) | 4.7e-3 | vanishing |"
