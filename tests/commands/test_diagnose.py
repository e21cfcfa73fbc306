"""``gradientflow diagnose`` and ``gradientflow show`` end to end (the demo, user recipes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradientflow.cli import main

RECIPE = """
import torch
from torch import nn

def recipe():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 1))
    x = torch.randn(256, 4)
    y = x.sum(1, keepdim=True)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)] * 4
    return {"model": model, "batches": batches, "loss_fn": nn.MSELoss(),
            "evaluate": lambda m: float(nn.functional.mse_loss(m(x), y).detach())}

def one_shot():
    spec = recipe()
    spec["batches"] = (b for b in spec["batches"][:8])
    return spec

def not_a_dict():
    return [1, 2]

def no_batches():
    return {"model": nn.Linear(2, 2), "loss_fn": nn.MSELoss()}

def bad_model():
    return {"model": "resnet", "batches": [], "loss_fn": nn.MSELoss()}

def bad_batch():
    return {"model": nn.Linear(2, 2), "batches": [torch.zeros(3, 2)], "loss_fn": nn.MSELoss()}
"""


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(RECIPE)
    return path


def test_demo_text_out_dir_fail_on_and_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc = main(
        ["diagnose", "--steps", "20", "--out", str(out), "--no-color", "--fail-on", "critical"]
    )
    text = capsys.readouterr().out
    assert rc == 1  # the demo's vanishing gradients are critical
    assert text.startswith("Trained the demo (20-layer sigmoid MLP on digits) for 20 steps")
    assert "Verdict: UNHEALTHY - gradients vanish toward the input (critical)" in text
    assert "CRITICAL vanishing" in text and "each layer multiplies" in text
    assert "depth  layer  kind" in text and "\033[" not in text
    assert (out / "meta.json").is_file() and (out / "diagnosis.json").is_file()
    report = (out / "report.html").read_text()
    assert "vanish" in report and "swap_activation:relu" in report  # verdict + prescriptions

    assert main(["show", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"healthy", "verdict", "reason", "worst", "findings", "meta", "layers"}
    assert doc["healthy"] is False and doc["worst"] == "critical"
    [van] = [f for f in doc["findings"] if f["kind"] == "vanishing"]
    assert set(van) == {"kind", "severity", "layers", "evidence", "message", "remedies"}
    assert van["evidence"]["first_to_last"] < 1e-12
    assert doc["meta"]["source"] == "demo" and doc["meta"]["steps"] == 20
    assert len(doc["layers"]) == 20 and doc["layers"][0]["name"] == "0"
    saved = json.loads((out / "diagnosis.json").read_text())
    assert saved["findings"] == doc["findings"]

    # the prescriptions are saved beside it, and `report DIR` (no model) writes them again
    names = [r["name"] for r in json.loads((out / "prescriptions.json").read_text())]
    assert "swap_activation:relu" in names
    html_before = report[report.index("id='prescriptions'") :]
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    html_after = (out / "report.html").read_text()
    assert (
        html_after[html_after.index("id='prescriptions'") :].split("</ol>")[0]
        == (html_before.split("</ol>")[0])
    )

    assert main(["diagnose", "--steps", "5", "--out", str(out)]) == 2
    assert "already holds a saved run" in capsys.readouterr().err


def test_user_recipe_json_and_default_optimizer(
    recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["diagnose", f"{recipe_file}:recipe", "--steps", "30", "--json", "--fail-on", "warning"]
    )
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "no optimizer: using Adam(lr=0.001)" in captured.err
    assert doc["meta"]["steps"] == 30 and doc["meta"]["source"].endswith("train.py:recipe")
    assert isinstance(doc["meta"]["evaluate"], float)
    assert rc == (1 if doc["findings"] and not doc["healthy"] else 0)
    assert len(doc["layers"]) == 3


def test_batches_are_cycled_epochs_counted_and_a_generator_running_out_noted(
    recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", f"{recipe_file}:recipe", "--steps", "70", "--no-color"]) == 0
    captured = capsys.readouterr()
    assert "for 70 steps" in captured.out and "ran out" not in captured.err  # 32 batches, cycled
    assert main(["diagnose", f"{recipe_file}:recipe", "--epochs", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["steps"] == 64
    assert main(["diagnose", f"{recipe_file}:one_shot", "--steps", "50", "--no-color"]) == 0
    captured = capsys.readouterr()
    assert "the batches ran out after 8 steps (asked for 50 steps): they are a one-shot" in (
        captured.err
    )
    assert "for 8 steps" in captured.out
    assert main(["diagnose", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.py:recipe", "file not found"),
        ("{file}", "expected FILE.py:FUNCTION"),
        ("{file}:nope", "has no function 'nope'"),
        ("{file}:not_a_dict", "must return a dict"),
        ("{file}:no_batches", "has no 'batches' key"),
        ("{file}:bad_model", "'model' must be a torch.nn.Module, got str"),
        ("{file}:bad_batch", "batch 0: each batch must be a pair (inputs, targets)"),
    ],
)
def test_bad_recipes_are_one_line_errors(
    recipe_file: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    rc = main(["diagnose", spec.format(file=recipe_file), "--steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("gradientflow: error: ") and message in err[-1]


def test_show_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["show", str(tmp_path)]) == 2
    assert "no gradientflow trace" in capsys.readouterr().err
    assert main(["diagnose", "--steps", "0"]) == 2
