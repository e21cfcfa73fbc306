"""trial: identical batches and seeds give identical numbers; the table; failures are rows."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.errors import GradientFlowError
from gradientflow.trial import TrialTable, trial


def _data(n: int = 12) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(32, 16, generator=g), torch.randint(0, 3, (32,), generator=g))
        for _ in range(n)
    ]


def _build() -> nn.Module:
    return mlp(depth=6, width=16, n_in=16, n_out=3)


def test_rows_are_deterministic_and_match_a_plain_training_loop() -> None:
    data = _data()
    kw = dict(
        remedies=["swap_activation:relu", "lower_lr"],
        optimizer=torch.optim.SGD,
        lr=0.1,
        progress=False,
    )
    a = trial(_build, data, nn.CrossEntropyLoss(), **kw)
    b = trial(_build, iter(data), nn.CrossEntropyLoss(), **kw)  # an iterator is read once
    for name in ("baseline", "swap_activation:relu", "lower_lr"):
        assert a[name].final_loss == b[name].final_loss
        assert a[name].grad_ratio == b[name].grad_ratio
    assert a["lower_lr"].lr == pytest.approx(0.01)
    # the baseline row equals a hand-written loop: same seed, batches, optimizer
    torch.manual_seed(0)
    model = _build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for x, y in data:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if not losses:  # weight and bias gradients of the first and the last layer
            first = torch.cat([model[0].weight.grad.flatten(), model[0].bias.grad])
            last = torch.cat([model[10].weight.grad.flatten(), model[10].bias.grad])
            ratio = float(first.norm() / last.norm())
        opt.step()
        losses.append(float(loss.detach()))
    assert a["baseline"].final_loss == pytest.approx(losses[-1], rel=1e-6)
    assert a["baseline"].grad_ratio == pytest.approx(ratio, rel=1e-4)


def test_table_sorts_prints_and_serialises() -> None:
    data = _data(8)
    acc = lambda m: float((m(data[0][0]).argmax(1) == data[0][1]).float().mean())  # noqa: E731
    table = trial(
        _build,
        data,
        nn.CrossEntropyLoss(),
        ["add_batchnorm", "to_lstm"],
        evaluate=acc,
        metric_name="acc",
        seeds=(0, 1),
        lr=0.05,
        progress=False,
    )
    assert isinstance(table, TrialTable) and len(table) == 3
    assert table["to_lstm"].error.startswith("to_lstm(): Sequential has no nn.RNN")
    assert table.rows[-1].name == "to_lstm"  # failed rows last
    metrics = [r.metric for r in table if math.isfinite(r.metric)]
    assert metrics == sorted(metrics, reverse=True)
    assert len(table["add_batchnorm"].per_seed) == 2
    text = str(table)
    assert "acc" in text.splitlines()[0] and "add_batchnorm" in text and "errors:" in text
    doc = json.loads(table.to_json())
    assert doc["metric"] == "acc" and doc["meta"]["seeds"] == [0, 1]
    table.sort("final_loss")
    assert table.rows[0].final_loss <= table.rows[1].final_loss


def test_optimizer_instance_is_reused_and_bad_input_errors() -> None:
    data = _data(4)
    model = _build()
    adam = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.8, 0.9))
    table = trial(
        model, data, nn.CrossEntropyLoss(), ["swap_activation:relu"], optimizer=adam, progress=False
    )
    assert table.meta["optimizer"] == "Adam" and table["baseline"].lr == 3e-3
    assert table["swap_activation:relu"].lr == 3e-3  # SGD lrs are not forced on Adam
    with pytest.raises(GradientFlowError, match=r"`batches` is empty"):
        trial(_build, [], nn.CrossEntropyLoss(), ["add_batchnorm"], progress=False)
    with pytest.raises(GradientFlowError, match=r"unknown remedy 'dropout'"):
        trial(_build, data, nn.CrossEntropyLoss(), ["dropout"], progress=False)
    with pytest.raises(GradientFlowError, match=r"give the baseline's lr="):
        trial(_build, data, nn.CrossEntropyLoss(), ["add_batchnorm"], optimizer=torch.optim.SGD)


def test_without_remedies_it_prescribes_from_the_baseline_diagnosis() -> None:
    from gradientflow.remedies import prescribe

    data = _data(30)
    table = trial(
        lambda: mlp(depth=12, width=16, n_in=16, n_out=3),
        data,
        nn.CrossEntropyLoss(),
        lr=0.05,
        progress=False,
    )
    assert table.meta["prescribed"] and table.diagnosis is not None
    expected = [r.name for r in prescribe(table.diagnosis, mlp(depth=12, n_in=16, n_out=3))]
    assert expected and sorted(r.name for r in table) == sorted(["baseline", *expected[:6]])
    with pytest.raises(GradientFlowError, match=r"`seeds` is empty"):
        trial(_build, data, nn.CrossEntropyLoss(), ["add_batchnorm"], seeds=(), progress=False)


def _fails(message: str) -> None:
    raise ZeroDivisionError(message)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "`steps` must be an integer >= 1 or None, got 0"),
        ({"steps": 2.5}, "`steps` must be an integer >= 1 or None, got 2.5"),
        ({"seeds": 5}, "`seeds` must be a list of integers, got 5"),
        ({"seeds": [0.7]}, "`seeds` must be integers, got 0.7"),
        ({"lr": float("nan")}, "`lr` must be a positive number, got nan"),
        ({"lr": -1.0}, "`lr` must be a positive number"),
        ({"remedies": 3}, "`remedies` must be a list of names, got 3"),
        ({"batches": None}, "`batches` must be an iterable"),
        ({"build": lambda: None}, "`build` must return an nn.Module, got NoneType"),
        ({"build": lambda: _fails("in build")}, "`build` raised ZeroDivisionError: in build"),
        ({"evaluate": lambda m: "good"}, "`evaluate` must return a number, got 'good'"),
        ({"evaluate": lambda m: _fails("in eval")}, "`evaluate` raised ZeroDivisionError"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    """Each bad argument is a GradientFlowError naming it (they were bare TypeError and
    ValueError from deep inside, and seeds=[0.7] silently ran seed 0, lr=nan a NaN row)."""
    args: dict[str, object] = {
        "build": _build,
        "batches": _data(4),
        "loss_fn": nn.CrossEntropyLoss(),
        "remedies": ["lower_lr"],
        "progress": False,
        **kwargs,
    }
    with pytest.raises(GradientFlowError, match=re.escape(message)):
        trial(**args)  # type: ignore[arg-type]
