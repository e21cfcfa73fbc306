"""The CLI on recipes that fail in the user's own code, on saved runs with odd values and on
trial flags: one-line errors naming the recipe, step, file or flag (exit 2), never a
traceback, and the recorded data kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gradientflow.cli import main

RECIPES = """
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn


def _data(n=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n * 16, 4, generator=g)
    y = x.sum(1, keepdim=True)
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n * 16, 16)]


def recipe():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    return {"model": model, "batches": _data(), "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.05)}


def scheduler_fails():
    r = recipe()
    r["scheduler"] = torch.optim.lr_scheduler.OneCycleLR(r["optimizer"], 0.1, total_steps=2)
    return r


class Inplace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 1)

    def forward(self, x):
        h = torch.sigmoid(self.a(x))
        h += 1  # modifies what sigmoid saved for its backward
        return self.b(h)


def backward_fails():
    r = recipe()
    r["model"] = Inplace()
    r["optimizer"] = torch.optim.SGD(r["model"].parameters(), lr=0.05)
    return r


def lbfgs():
    r = recipe()
    r["optimizer"] = torch.optim.LBFGS(r["model"].parameters(), max_iter=2)
    return r


def eval_nan():
    r = recipe()
    r["evaluate"] = lambda m: float("nan")
    return r


def nan_loss():
    r = recipe()
    r["loss_fn"] = lambda out, y: (out - y).square().mean() * float("nan")
    return r


def only_train_step():
    r = recipe()
    del r["loss_fn"]
    r["train_step"] = lambda model, batch: (model(batch[0]) - batch[1]).square().mean()
    return r


def exits():
    sys.exit(3)


@dataclass
class Config:
    width: int = 8


def with_dataclass():
    r = recipe()
    r["model"] = nn.Sequential(nn.Linear(4, Config().width), nn.Tanh(), nn.Linear(8, 1))
    r["optimizer"] = torch.optim.SGD(r["model"].parameters(), lr=0.05)
    return r
"""


@pytest.fixture
def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "recipes.py").write_text(RECIPES)
    monkeypatch.chdir(tmp_path)
    return "recipes.py"


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_errors_in_the_recipes_scheduler_and_backward_name_them(
    recipes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", f"{recipes}:scheduler_fails", "--steps", "5"]) == 2
    err = _error(capsys)
    assert "recipes.py:scheduler_fails: step 2: the recipe's scheduler's step raised" in err
    assert "ValueError" in err
    assert main(["diagnose", f"{recipes}:backward_fails", "--steps", "5"]) == 2
    err = _error(capsys)
    assert "step 0: the recipe's backward pass (loss.backward()) raised RuntimeError" in err


def test_an_lbfgs_recipe_trains_with_a_closure(
    recipes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", f"{recipes}:lbfgs", "--steps", "4", "--json"]) in (0, 1)
    doc = json.loads(capsys.readouterr().out)
    assert doc["meta"]["steps"] == 4 and isinstance(doc["meta"]["final_loss"], float)


def test_import_time_exits_and_dataclasses(
    recipes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recipe module that parses arguments at import (argparse exits), one whose function
    calls sys.exit, and one with a dataclass under `from __future__ import annotations`."""
    (tmp_path / "argp.py").write_text(
        "import argparse\nargparse.ArgumentParser().parse_args(['--unknown'])\n"
        "def recipe():\n    pass\n"
    )
    assert main(["diagnose", "argp.py:recipe", "--steps", "2"]) == 2
    err = _error(capsys)
    assert "importing argp.py exited (SystemExit: 2)" in err and "__main__" in err
    assert main(["diagnose", f"{recipes}:exits", "--steps", "2"]) == 2
    assert "exits() exited (SystemExit: 3)" in _error(capsys)
    assert main(["diagnose", f"{recipes}:with_dataclass", "--steps", "2", "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["meta"]["steps"] == 2


def test_show_reads_a_nan_evaluate_and_refuses_a_damaged_one(
    recipes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["diagnose", f"{recipes}:eval_nan", "--steps", "3", "--out", str(out)]) in (0, 1)
    capsys.readouterr()
    assert main(["show", str(out), "--no-color"]) in (0, 1)
    assert "evaluate(): nan." in capsys.readouterr().out
    doc = json.loads((out / "diagnosis.json").read_text())
    doc["meta"]["evaluate"] = "abc"
    (out / "diagnosis.json").write_text(json.dumps(doc))
    assert main(["show", str(out)]) == 2
    assert "meta.evaluate is 'abc', not a number" in _error(capsys)
    doc["meta"] = ["source"]
    (out / "diagnosis.json").write_text(json.dumps(doc))
    assert main(["show", str(out)]) == 2
    assert "'meta' is no object" in _error(capsys)


def test_a_loss_nan_from_the_first_step_is_counted_on_every_step(
    recipes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", f"{recipes}:nan_loss", "--steps", "12", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    [bad] = [f for f in doc["findings"] if f["kind"] == "nonfinite"]
    ev = bad["evidence"]
    assert ev["bad_steps"] == ev["recorded_steps"] == 10  # stopped after 10 NaN steps
    assert ev["persists"] is True and ev["from_start"] is True
    assert "before any update could cause them" in bad["message"]


def test_a_report_without_matplotlib_has_no_plots_and_says_why(
    recipes: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert main(["diagnose", f"{recipes}:recipe", "--steps", "3", "--out", str(out)]) in (0, 1)
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert "the report has no plots" in _error(capsys)
    html = (tmp_path / "r.html").read_text()
    assert "No plots: the plots need the optional package matplotlib" in html
    assert "Per-layer table" in html


def test_trial_flags_are_named_as_typed_and_checked_before_training(
    recipes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["trial", f"{recipes}:recipe", "--remedies", "lower_lr"]
    for extra, message in (
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--remedies", "nosuch"], "--remedies: unknown remedy 'nosuch'"),
        (["--seeds", "a"], "--seeds: expected integers"),
        (["--seeds", str(10**23)], "is not a 64-bit seed"),
    ):
        assert main([*base, *extra]) == 2, extra
        assert message in _error(capsys), extra
    out = tmp_path / "late"
    args = ["diagnose", f"{recipes}:recipe", "--steps", "3", "--out", str(out), "--trial"]
    assert main([*args, "--trial-remedies", "nosuch"]) == 2
    assert "--trial-remedies: unknown remedy" in _error(capsys)
    assert not (out / "meta.json").exists()  # refused before any training
    assert main([*args, "--trial-steps", "0"]) == 2
    assert "--trial-steps must be >= 1" in _error(capsys)


def test_a_trial_cycles_the_batches_to_its_steps_and_a_failed_trial_keeps_the_report(
    recipes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trial", f"{recipes}:recipe", "--remedies", "lower_lr", "--steps", "20"]) == 0
    assert "20 steps each" in capsys.readouterr().out  # 8 batches, read 2.5 times
    out = tmp_path / "run"
    args = ["diagnose", f"{recipes}:only_train_step", "--steps", "3", "--out", str(out)]
    assert main([*args, "--trial", "--trial-remedies", "lower_lr"]) == 2
    assert "has only a 'train_step'" in _error(capsys)
    assert (out / "report.html").is_file() and (out / "diagnosis.json").is_file()


def test_out_never_replaces_a_report_or_diagnosis_already_there(
    recipes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("report.html", "diagnosis.json"):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text("mine")
        assert main(["diagnose", f"{recipes}:recipe", "--steps", "2", "--out", str(out)]) == 2
        assert f"already holds a {name}" in _error(capsys)
        assert (out / name).read_text() == "mine" and not (out / "meta.json").exists()


def test_show_and_report_skip_a_damaged_chunk_when_asked(
    recipes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated chunk is refused with a hint a command-line user can follow
    (--skip-damaged), which then reads the other chunks and reports the lost one."""
    out = tmp_path / "run"
    # 8 batches cycled for 120 steps: 3 chunks of 50 records
    assert main(["diagnose", f"{recipes}:recipe", "--steps", "120", "--out", str(out)]) in (0, 1)
    capsys.readouterr()
    chunk = sorted((out / "chunks").iterdir())[1]
    chunk.write_bytes(chunk.read_bytes()[:100])
    assert main(["show", str(out)]) == 2
    assert "show/report --skip-damaged" in _error(capsys)
    assert main(["show", str(out), "--skip-damaged", "--json"]) in (0, 1)
    captured = capsys.readouterr()
    assert "gradientflow: warning: Trace.load:" in captured.err
    assert "50 records lost" in captured.err
    assert "load_run(" not in captured.err  # one line, not Python's source line
    doc = json.loads(captured.out)
    assert doc["meta"]["source"].endswith("recipes.py:recipe")
    assert main(["report", str(out), "--skip-damaged", "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file()


def test_lab_refuses_bad_arguments_before_making_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra, message in (
        (["nosuch"], "nosuch"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--seeds", "0"], "--seeds must be >= 1"),
    ):
        out = tmp_path / "lab"
        assert main(["lab", "--quick", *extra, "--out", str(out)]) == 2, extra
        assert message in _error(capsys), extra
        assert not out.exists(), extra


def test_write_html_refuses_a_trial_that_is_no_table_and_draws_none_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradientflow import GradientFlowError, Trace
    from gradientflow.report.html import write_html

    trace = Trace.build(["a"], grad_norm=[[1.0], [0.5]])
    with pytest.raises(GradientFlowError, match="`trial` must be a trial table"):
        write_html(trace, tmp_path / "r.html", trial=5)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rows = [{"name": "baseline", "final_loss": 1.0}, {"name": "lower_lr", "final_loss": 0.5}]
    html = write_html(trace, tmp_path / "r.html", trial=rows).read_text()
    assert "id='trial'" in html and "lower_lr" in html and "No plots" in html
