"""``gradientflow preflight``: the command's run(args) on the demo and on a recipe file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gradientflow.commands import preflight as command
from gradientflow.errors import GradientFlowError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(["preflight", *argv])


def _recipe(tmp_path: Path, *body: str) -> str:
    """A recipe file whose ``recipe()`` runs ``body`` (lines, indented here); its spec."""
    path = tmp_path / "r.py"
    lines = "".join(f"    {line}\n" for line in body)
    path.write_text(f"import torch\nfrom torch import nn\ndef recipe():\n{lines}")
    return f"{path}:recipe"


def test_demo_text_and_fail_on(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["--fail-on", "critical"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "[critical] vanishing" in out and "χ₁ = 0.020" in out


def test_recipe_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _recipe(
        tmp_path,
        "torch.manual_seed(0)",
        "m = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),",
        "                  nn.Linear(64, 3))",
        "for l in m:",
        "    if isinstance(l, nn.Linear): nn.init.kaiming_normal_(l.weight)",
        "data = [(torch.randn(32, 8), torch.randint(0, 3, (32,)))]",
        "return {'model': m, 'batches': data, 'loss_fn': nn.CrossEntropyLoss()}",
    )
    args = _parse([spec, "--json", "--fail-on", "warning"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["depth"] == 3 and doc["probe"] == "loss_fn" and doc["healthy"] is True
    assert doc["chi1"] == pytest.approx(1.0, abs=0.2)


def test_recipe_with_a_train_step_and_no_loss_fn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # its batches are (x, y) pairs, but without a loss_fn the probe cannot use y: preflight
    # runs on x with its own probe loss instead of refusing a target without a loss_fn
    spec = _recipe(
        tmp_path,
        "torch.manual_seed(0)",
        "m = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),",
        "                  nn.Linear(32, 3))",
        "data = [(torch.randn(16, 8), torch.randint(0, 3, (16,)))]",
        "step = lambda model, b: nn.functional.cross_entropy(model(b[0]), b[1])",
        "return {'model': m, 'batches': data, 'train_step': step}",
    )
    args = _parse([spec, "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["depth"] == 3 and doc["probe"] != "loss_fn"


def test_fail_on_fails_a_model_it_could_not_judge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # one weight layer: no flow to judge, verdict unknown; a CI gate must not read that as a pass
    spec = _recipe(
        tmp_path,
        "data = [(torch.randn(16, 8), torch.randint(0, 3, (16,)))]",
        "return {'model': nn.Linear(8, 3), 'batches': data, 'loss_fn': nn.CrossEntropyLoss()}",
    )
    args = _parse([spec, "--json", "--fail-on", "critical"])
    assert args.func(args) == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "unknown"
    without = _parse([spec, "--json"])
    assert without.func(without) == 0  # without --fail-on: reported, not failed


def test_bad_recipe_is_a_clear_error() -> None:
    args = _parse(["nowhere.py:recipe"])
    with pytest.raises(GradientFlowError, match="file not found"):
        args.func(args)


def test_public_name_is_callable_whichever_is_imported_first() -> None:
    import sys

    import torch
    from torch import nn

    import gradientflow
    import gradientflow.preflight.theory  # binds the package to gradientflow.preflight

    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    package = sys.modules["gradientflow.preflight"]
    assert package(model, torch.randn(8, 4)).depth == 2
    assert gradientflow.preflight(model, torch.randn(8, 4)).depth == 2
