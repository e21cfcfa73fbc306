"""Nothing the monitor does may break training, lose the record, or hide the user's error.

Regression tests for issue 12, items 1, 4, 5 and 10 (the monitor's side).
"""

from __future__ import annotations

import copy
import errno
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import GradientFlowError, Schedule, Trace
from gradientflow.errors import GradientFlowWarning
from gradientflow.trace import TraceWriter


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def one_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()


def stopped(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "stopped recording" in str(w.message)]


# ---------------------------------------------------------------- 1. the final flush is guarded
def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def append(self: TraceWriter, chunk: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TraceWriter, "append", append)


def test_full_disk_at_exit_never_replaces_the_users_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _full_disk(monkeypatch)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with (
            pytest.raises(ValueError, match="the user's own") as info,
            gradientflow.watch(model, opt, log_dir=tmp_path / "run") as mon,
        ):
            for _ in range(7):
                one_step(model, opt, torch.randn(8, 4))
            raise ValueError("the user's own error")
    assert info.value.__context__ is None  # nothing of ours was chained onto it
    [message] = stopped(record)
    assert "No space left" in message
    trace = mon.trace  # nothing lost: the records stay in memory
    assert trace.n_records == 7 and list(trace.steps) == list(range(7))
    assert "No space left" in trace.meta["recording_error"]


def test_full_disk_at_exit_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_disk(monkeypatch)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with (
        pytest.warns(GradientFlowWarning, match="stopped recording"),
        gradientflow.watch(model, opt, log_dir=tmp_path / "run") as mon,
    ):
        for _ in range(3):
            one_step(model, opt, torch.randn(8, 4))
    assert mon.trace.n_records == 3
    assert "ENOSPC" in mon.trace.meta["recording_error"] or "No space" in str(
        mon.trace.meta["recording_error"]
    )


class _Enc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.add_module("enc lstm", nn.LSTM(3, 6, batch_first=True))
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = getattr(self, "enc lstm")(x)
        return self.head(out[:, -1])


def test_a_recurrent_layer_name_with_a_space_does_not_stop_recording(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Enc()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = Schedule(full_every=5)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with gradientflow.watch(
            model, opt, log_dir=tmp_path, flush_every=10, schedule=schedule
        ) as mon:
            for _ in range(30):
                opt.zero_grad()
                model(torch.randn(4, 7, 3)).pow(2).mean().backward()
                opt.step()
    assert not stopped(record)
    trace = mon.trace
    assert trace.meta["recording_error"] is None
    assert list(trace.steps) == list(range(30))
    assert trace.extras["bptt/enc lstm/steps"].tolist() == [0, 5, 10, 15, 20, 25]  # full steps
    assert trace.extras["bptt/enc lstm/dl_dh"].shape == (6, 7)
    assert list(Trace.load(tmp_path).steps) == list(range(30))  # every chunk reached the disk


# ---------------------------------------------------------------- 4. deepcopy inside watch
def _run(with_twin: bool) -> tuple[Trace, nn.Module | None]:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    twin = None
    gen = torch.Generator().manual_seed(1)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        for i in range(4):
            x = torch.randn(16, 4, generator=gen)
            if with_twin and i == 1:
                twin = copy.deepcopy(model)  # e.g. an EMA/teacher copy, hooks and all
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            if twin is not None:
                (twin(x * 50.0) * 30.0).sum().backward()  # the copy runs big values
            opt.step()
    return mon.trace, twin


def test_a_deepcopy_made_inside_watch_leaves_the_real_statistics_alone() -> None:
    reference, _ = _run(with_twin=False)
    trace, twin = _run(with_twin=True)
    for metric in ("out_rms", "out_grad_norm", "in_sat_frac", "grad_norm", "weight_norm"):
        np.testing.assert_array_equal(trace.metrics[metric], reference.metrics[metric])
    assert twin is not None
    clean = copy.deepcopy(mlp())
    counts = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in twin.modules()]
    assert counts == [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in clean.modules()]


def test_hooks_carried_by_a_copy_are_inert_and_leave_at_their_first_call() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        one_step(model, opt, torch.randn(8, 4))
        twin = copy.deepcopy(model)  # never run inside the block
        one_step(model, opt, torch.randn(8, 4))
    before = mon.trace
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in twin.modules()) > 0
    twin(torch.randn(8, 4) * 100).sum().backward()  # after exit: inert, and gone
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in twin.modules()) == 0
    np.testing.assert_array_equal(mon.trace.metrics["out_rms"], before.metrics["out_rms"])


# ---------------------------------------------------------------- 5. every hook is guarded
def _jagged() -> torch.Tensor:
    return torch.nested.nested_tensor([torch.randn(3, 4), torch.randn(5, 4)], layout=torch.jagged)


@pytest.mark.parametrize(
    ("make", "width"),
    [(_jagged, 4), (lambda: torch.randn(16, 0), 0), (lambda: torch.randn(0, 4), 4)],
    ids=["jagged", "zero-width", "empty-batch"],
)
def test_odd_inputs_train_exactly_as_unwatched(make: Any, width: int) -> None:
    def train(watched: bool) -> tuple[list[torch.Tensor], Any]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(width, 8), nn.ReLU(), nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        mon = gradientflow.watch(model, opt, schedule=Schedule.everything()) if watched else None
        if mon is not None:
            mon.attach()
        torch.manual_seed(1)
        for _ in range(3):
            opt.zero_grad()
            out = model(make())
            (out.values() if out.is_nested else out).pow(2).sum().backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()], mon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: zero-element init is a no-op
        plain, _ = train(False)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always", GradientFlowWarning)
            watched, mon = train(True)
    for a, b in zip(plain, watched, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ours = [w for w in record if issubclass(w.category, GradientFlowWarning)]
    assert len(ours) <= 1 and not stopped(ours)
    trace = mon.detach()
    assert trace.n_records == 3 and np.isfinite(trace.metrics["grad_norm"]).all()


# ---------------------------------------------------------------- 10. log(), failed steps, growth
@pytest.mark.parametrize(
    "bad", ["abc", [1.0], {"loss": 1.0}, 1 + 2j, torch.tensor(1 + 1j), True, torch.tensor(True)]
)
def test_log_refuses_what_is_not_a_real_number(bad: Any) -> None:
    model = mlp()
    mon = gradientflow.watch(model).attach()
    with pytest.raises(GradientFlowError, match="`loss` must be a real number"):
        mon.log(bad)
    mon.log(np.float32(2.5))
    model(torch.randn(2, 4)).sum().backward()
    mon.step()
    assert mon.detach().loss.tolist() == [2.5]


def test_log_reads_no_value_of_a_loss_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """log() keeps the tensor as it is: no repr, no .item() (each a host sync on a GPU; the
    statistics of the step read small CPU vectors on purpose, so only log() is checked)."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = gradientflow.watch(model, opt).attach()
    loss = model(torch.randn(2, 4)).pow(2).mean()
    loss.backward()

    def read(*_: Any) -> Any:
        raise AssertionError("the loss's value was read inside the step")

    for name in ("__repr__", "__str__", "item", "tolist", "__float__", "__format__"):
        monkeypatch.setattr(torch.Tensor, name, read)
    mon.log(loss)
    monkeypatch.undo()
    opt.step()
    assert mon.detach().loss.tolist() == pytest.approx([float(loss)])


def _failing_closure() -> float:
    raise RuntimeError("optimizer failed")


def test_an_optimizer_step_that_raises_leaves_no_duplicate_record() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        for i in range(6):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            mon.log(loss)
            if i == 2:  # the step pre-hook ran, then the step raised: no step happened
                with pytest.raises(RuntimeError, match="optimizer failed"):
                    opt.step(_failing_closure)
            else:
                opt.step()
    trace = mon.trace
    assert list(trace.steps) == [0, 1, 2, 3, 4]  # five steps happened, each recorded once
    assert trace.meta["failed_optimizer_steps"] == 1
    assert np.isfinite(trace.loss).all()
    assert np.isfinite(trace.metrics["update_norm"]).all()


def test_a_param_group_added_later_is_followed() -> None:
    model = mlp()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        one_step(model, opt, torch.randn(8, 4))
        opt.add_param_group({"params": list(model[2].parameters())})
        for _ in range(2):
            one_step(model, opt, torch.randn(8, 4))
    trace = mon.trace
    assert trace.trainable.tolist() == [True, True]
    upd = trace.metrics["update_norm"][:, 1]
    assert upd[0] == 0.0 and (upd[1:] > 0).all()  # layer 2 moves once the optimizer has it


def test_a_module_added_after_the_first_step_is_reported_once() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with (
        pytest.warns(GradientFlowWarning, match="not recorded") as record,
        gradientflow.watch(model, opt, flush_every=2) as mon,
    ):
        one_step(model, opt, torch.randn(8, 4))
        model.append(nn.Linear(1, 1))
        opt.add_param_group({"params": list(model[3].parameters())})
        for _ in range(6):
            one_step(model, opt, torch.randn(8, 4))
    assert len([w for w in record if "not recorded" in str(w.message)]) == 1
    assert mon.trace.meta["untracked_parameters"] == ["3.weight", "3.bias"]
