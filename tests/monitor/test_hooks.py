"""The monitor leaves nothing behind, never crashes the loop, and refuses bad input clearly."""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import GradientFlowError, Schedule
from gradientflow.errors import GradientFlowWarning
from gradientflow.trace import Trace


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))


def hook_counts(model: nn.Module) -> tuple[int, ...]:
    counts = []
    for m in model.modules():
        counts += [len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)]
    return tuple(counts)


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, n: int = 3) -> None:
    for _ in range(n):
        opt.zero_grad()
        model(torch.randn(16, 6)).pow(2).mean().backward()
        opt.step()


class Recorder:
    """A picklable user hook."""

    def __init__(self, log: list[str], tag: str) -> None:
        self.log, self.tag = log, tag

    def __call__(self, *args: object) -> None:
        self.log.append(self.tag)


def test_detach_removes_every_hook_and_keeps_user_hooks() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fired: list[str] = []
    model[0].register_forward_hook(Recorder(fired, "fwd"))
    opt.register_step_post_hook(Recorder(fired, "opt"))
    before = hook_counts(model)
    opt_hooks_before = len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)
    model.eval()
    with gradientflow.watch(model, opt):
        assert hook_counts(model) != before
        model.train()
        train_steps(model, opt)
        model.eval()
    assert hook_counts(model) == before
    assert (len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)) == (
        opt_hooks_before
    )
    assert not model.training  # mode is the user's, untouched
    assert fired.count("fwd") == 3 and fired.count("opt") == 3
    fired.clear()
    model.train()
    train_steps(model, opt, 1)
    assert fired == ["fwd", "opt"]
    pickle.loads(pickle.dumps(model))
    copy.deepcopy(model)


def test_hooks_removed_when_the_block_raises() -> None:
    model = make_model()
    opt = torch.optim.Adam(model.parameters())
    before = hook_counts(model)
    with pytest.raises(RuntimeError, match="user error"), gradientflow.watch(model, opt) as mon:
        train_steps(model, opt, 2)
        raise RuntimeError("user error")
    assert hook_counts(model) == before
    assert mon.trace.n_records == 2  # recorded data is kept
    pickle.dumps(model)


def test_user_exception_before_any_step_is_not_hidden() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="bad batch"), gradientflow.watch(model):
        raise ValueError("bad batch")
    assert hook_counts(model) == hook_counts(make_model())


def test_activations_are_known_inside_a_frozen_stretch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8), nn.Sigmoid(), nn.Dropout(0.0), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)
    )
    model[0].requires_grad_(False)
    model[3].requires_grad_(False)
    with torch.no_grad():
        model[3].bias.fill_(-100.0)  # the ReLU after it is dead
    opt = torch.optim.SGD(model[5].parameters(), lr=0.1)
    with gradientflow.watch(model, opt) as mon:
        train_steps(model, opt, 1)
    t = mon.trace
    assert [layer.input_activation for layer in t.layers] == [None, "sigmoid", "relu"]
    assert t.metrics["in_dead_frac"][0, 2] == 1.0


def test_nonfinite_gradients_are_recorded_not_raised() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientFlowWarning)
        with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
            train_steps(model, opt, 1)
            opt.zero_grad()
            out = model(torch.randn(16, 6))
            (out.pow(2).mean() * float("inf")).backward()
            opt.step()
    t = mon.trace
    assert np.isfinite(t.metrics["grad_norm"][0]).all()
    assert not np.isfinite(t.metrics["grad_norm"][1]).any()
    assert t.metrics["nonfinite"][1, 0] == 6 * 8 + 8  # every entry of the first Linear
    assert math.isnan(t.scalars["global_grad_norm"][1]) or math.isinf(
        t.scalars["global_grad_norm"][1]
    )


def test_frozen_and_unoptimized_layers_are_marked_not_trainable() -> None:
    model = make_model()
    model[0].requires_grad_(False)
    opt = torch.optim.SGD(model[3].parameters(), lr=0.1)  # BatchNorm not optimized
    with gradientflow.watch(model, opt) as mon:
        train_steps(model, opt, 2)
    t = mon.trace
    assert [layer.trainable for layer in t.layers] == [False, False, True]
    assert np.isnan(t.metrics["grad_norm"][:, 0]).all()  # frozen: no gradient at all
    assert np.isfinite(t.metrics["grad_norm"][:, 1]).all()  # BN has gradients, just no step
    assert t.metrics["update_norm"][0, 1] == 0.0


def test_bad_input_gives_clear_errors() -> None:
    with pytest.raises(GradientFlowError, match="no parameters"):
        gradientflow.watch(nn.ReLU())
    with pytest.raises(GradientFlowError, match=r"nn\.Module"):
        gradientflow.watch("model")  # type: ignore[arg-type]
    other = nn.Linear(2, 2)
    with pytest.raises(GradientFlowError, match="updates none of the model"):
        gradientflow.watch(make_model(), torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(GradientFlowError, match="flush_every"):
        gradientflow.watch(make_model(), flush_every=0)
    for role in ("frozen", "Discriminator", 1, torch.tensor(1.0)):
        accepted = "'discriminator', 'critic', 'generator', 'adversarial' or None"
        with pytest.raises(GradientFlowError, match=rf"`role` must be one of {accepted}, got"):
            gradientflow.watch(make_model(), role=role)  # type: ignore[arg-type]
    model = make_model()
    mon = gradientflow.watch(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(GradientFlowError, match="records at every"):
        mon.step()
    with pytest.raises(GradientFlowError, match="nothing was recorded"):
        _ = mon.trace
    with pytest.raises(GradientFlowError, match="scalar"):
        mon.log(loss=torch.ones(3))
    assert mon.close() is None  # nothing was recorded: close() says so by None, never raises
    assert not mon._handles


class _NoProbe:
    pass


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("schedule", "everything", "`schedule` must be a Schedule or None, got 'everything'"),
        ("schedule", Schedule.everything, r"not called: pass Schedule\.everything\(\)"),
        ("zero_threshold", "x", "`zero_threshold` must be a number, got 'x'"),
        ("saturation_eps", None, "`saturation_eps` must be a number, got None"),
        ("flush_every", 2.5, "`flush_every` must be an integer, got 2.5"),
        ("flush_every", "10", "`flush_every` must be an integer, got '10'"),
        ("warn", "yes", "`warn` must be True or False, got 'yes'"),
        ("through_time", "no", "`through_time` must be True or False"),
        ("overwrite", 1, "`overwrite` must be True or False, got 1"),
        ("log_dir", 123, "`log_dir` must be a folder path"),
        ("tensorboard", 1.5, "`tensorboard` must be a folder path"),
        ("probes", _NoProbe(), "`probes` must be a list of gradientflow Probe objects"),
        ("probes", [_NoProbe()], r"`probes\[0\]` must be a gradientflow Probe, got a value"),
        ("scaler", object(), "`scaler` must be a torch.amp.GradScaler or None"),
    ],
)
def test_an_option_of_the_wrong_type_is_named_and_nothing_is_hooked(
    option: str, value: object, message: str
) -> None:
    """A wrong type is refused before anything is hooked: the model and the optimizer keep
    no hook, and an unwatched step afterwards warns nothing (a failed watch() once left its
    hooks behind, firing at every later step)."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_counts(model)
    with pytest.raises(GradientFlowError, match=message):
        gradientflow.watch(model, opt, **{option: value})
    assert hook_counts(model) == before
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_steps(model, opt, 1)


def test_a_failure_while_attaching_removes_every_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails in attach(), the last part included (arming the first step's hooks),
    leaves neither the optimizer nor the model hooked."""
    from gradientflow import monitor

    def fail(self: object, step: int) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(monitor.Monitor, "_prepare", fail)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_counts(model)
    with pytest.raises(RuntimeError, match="boom"):
        gradientflow.watch(model, opt, schedule=Schedule.everything())
    assert hook_counts(model) == before
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_loss_logged_before_or_after_the_step_lands_on_that_step() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gradientflow.watch(model, opt) as mon:
        for i in range(4):
            opt.zero_grad()
            model(torch.randn(16, 6)).pow(2).mean().backward()
            if i % 2 == 0:
                mon.log(loss=float(i))
                opt.step()
            else:
                opt.step()
                mon.log(loss=torch.tensor(float(i)))
    assert list(mon.trace.loss) == [0.0, 1.0, 2.0, 3.0]


def test_grad_scaler_values_are_unscaled_and_skips_recorded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    x = torch.randn(16, 6)
    # reference: the plain gradient without any scaling
    model(x).pow(2).mean().backward()
    expected = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in model[0].parameters()))
    model.zero_grad()
    with gradientflow.watch(model, opt, scaler=scaler, schedule=Schedule.everything()) as mon:
        scaler.scale(model(x).pow(2).mean()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        scaler.scale(model(x).pow(2).mean() * float("inf")).backward()
        scaler.step(opt)  # found inf: optimizer.step is skipped
        scaler.update()
    assert "step" not in scaler.__dict__  # the wrapper is gone
    t = mon.trace
    assert t.metrics["grad_norm"][0, 0] == pytest.approx(expected, rel=1e-5)
    assert list(t.scalars["skipped"]) == [0.0, 1.0]
    assert not np.isfinite(t.metrics["grad_norm"][1, 0])
    assert t.metrics["update_norm"][1, 0] == 0.0


def test_validation_in_eval_mode_does_not_overwrite_activation_stats() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with gradientflow.watch(model, opt) as mon:
        opt.zero_grad()
        model(torch.randn(16, 6)).sum().backward()
        model.eval()
        with torch.no_grad():
            model(torch.randn(16, 6))
        model.train()
        opt.step()
    assert mon.trace.metrics["in_dead_frac"][0, 1] == 1.0


def test_warn_raises_one_warning_per_critical_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradientflow.diagnosis.findings import Diagnosis, Finding

    calls = []

    def fake(self: gradientflow.Monitor) -> Diagnosis:
        calls.append(self.step_count)
        return Diagnosis([Finding("vanishing", "critical", ["0"], {}, "Gradients vanish.")])

    monkeypatch.setattr(gradientflow.Monitor, "diagnose", fake)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with (
        pytest.warns(GradientFlowWarning, match="Gradients vanish") as record,
        gradientflow.watch(model, opt, warn=True),
    ):
        train_steps(model, opt, 25)
    assert len([w for w in record if "vanish" in str(w.message)]) == 1
    assert calls[:2] == [10, 20]  # checked early: after 10 and 20 steps


def test_a_declared_role_is_kept_in_meta_through_save_and_load(tmp_path: Path) -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run_dir = tmp_path / "run"
    with gradientflow.watch(model, opt, role="discriminator", log_dir=run_dir) as mon:
        train_steps(model, opt)
    assert mon.trace.meta["role"] == "discriminator"
    mon.trace.save(tmp_path / "saved")
    for folder in (run_dir, tmp_path / "saved"):  # written as it went, and saved after
        assert Trace.load(folder).meta["role"] == "discriminator"
    with gradientflow.watch(model, opt) as mon:  # undeclared: no role at all
        train_steps(model, opt)
    assert "role" not in mon.trace.meta
