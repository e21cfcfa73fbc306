"""`gradientflow diagnose` prints prescriptions under findings; `--trial` runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradientflow.cli import main

RECIPE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(2, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        out, h = self.rnn(x)
        return self.head(h[-1])


def recipe():
    torch.manual_seed(0)
    model = Net()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 12, 2, generator=g), torch.randn(16, 1, generator=g))
            for _ in range(12)]
    return {"model": model, "batches": data, "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.05)}
"""


def test_demo_prints_prescriptions_and_a_trial_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "diagnose",
        "--steps",
        "30",
        "--no-color",
        "--trial",
        "--trial-steps",
        "25",
        "--trial-remedies",
        "add_batchnorm,swap_activation:relu",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "prescription: swap_activation:relu — ReLU + He init" in out
    # the demo's batches are all full (drop_last): 25 steps for every candidate
    table = out[out.index("Trial: baseline and 2 remedies, 25 steps each") :]
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("remedy"))
    assert "test acc" in header and "grad first/last" in header
    names = {line.split()[0] for line in lines if line.split() and line[0].isalpha()}
    assert {"baseline", "add_batchnorm", "swap_activation:relu"} <= names


def test_user_recipe_trial_saves_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "train.py"
    path.write_text(RECIPE)
    out_dir = tmp_path / "run"
    argv = [
        "diagnose",
        f"{path}:recipe",
        "--steps",
        "12",
        "--trial",
        "--trial-remedies",
        "to_lstm,clip_gradients",
        "--out",
        str(out_dir),
        "--json",
    ]
    assert main(argv) in (0, 1)
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays one JSON document; the table went to stderr
    assert "to_lstm" in captured.err
    doc = json.loads((out_dir / "trial.json").read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    assert set(rows) == {"baseline", "to_lstm", "clip_gradients"}
    assert rows["to_lstm"]["error"] == "" and doc["meta"]["steps"] == 12


def test_unknown_trial_remedy_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["diagnose", "--steps", "5", "--trial", "--trial-remedies", "dropout"]
    assert main(argv) == 2
    assert "unknown remedy 'dropout'" in capsys.readouterr().err


def test_trial_command_names_or_prescribes_its_remedies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "train.py"
    path.write_text(RECIPE)
    spec = f"{path}:recipe"
    argv = ["trial", spec, "--steps", "10", "--remedies", "to_lstm", "--out", str(tmp_path / "t")]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert sorted(r["name"] for r in doc["rows"]) == ["baseline", "to_lstm"]  # best first
    assert doc["meta"]["steps"] == 10
    assert "Trial: baseline and 1 remedy, 10 steps each" in captured.err
    assert json.loads((tmp_path / "t" / "trial.json").read_text()) == doc
    # without --remedies: trained and diagnosed first, then the prescribed remedies are trialled
    assert main(["trial", "--steps", "5", "--diagnose-steps", "20"]) == 0  # the demo vanishes
    out = capsys.readouterr().out
    table = out[out.index("Trial: baseline and ") :]
    assert "5 steps each" in table and "swap_activation:relu" in table
    assert main(["trial", spec, "--remedies", "dropout"]) == 2
    assert "unknown remedy 'dropout'" in capsys.readouterr().err
