"""Every number the monitor records equals a plain per-parameter computation.

The references are computed in the training loop itself with ``torch.linalg.vector_norm`` on each
parameter, on real models (MLP, CNN with BatchNorm, LSTM, F.relu in a forward, tied weights)
trained on scikit-learn's digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradientflow
from gradientflow import Schedule
from gradientflow.lab.datasets import batches, digits


class FunctionalMLP(nn.Module):
    """Activations called functionally, registered in reverse order of use."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(32, 10)
        self.hidden = nn.Linear(32, 32)
        self.inp = nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.inp(x))
        x = torch.tanh(self.hidden(x))
        return self.out(x)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 8, 8)
        x = F.relu(self.bn1(self.conv1(x)))
        x = torch.sigmoid(self.conv2(x))
        return self.head(x.flatten(1))


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.view(-1, 8, 8))
        return self.head(out[:, -1])


class TiedAutoencoder(nn.Module):
    """Encoder and decoder share one weight; the classifier reads the code."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(64, 32)
        self.dec = _TiedLinear(self.enc)
        self.cls = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = torch.relu(self.enc(x))
        recon = self.dec(code)
        return self.cls(code) + 0.0 * recon.sum()


class _TiedLinear(nn.Module):
    def __init__(self, enc: nn.Linear) -> None:
        super().__init__()
        self.weight = enc.weight  # the same Parameter object: tied
        self.bias = nn.Parameter(torch.zeros(enc.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.t(), self.bias)


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
    )


MODELS: dict[str, Callable[[], nn.Module]] = {
    "mlp": mlp,
    "functional": FunctionalMLP,
    "cnn_bn": SmallCNN,
    "lstm": LSTMClassifier,
    "tied": TiedAutoencoder,
}
OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
}


def norm_of(tensors: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(torch.linalg.vector_norm(t.double())) ** 2 for t in tensors))


def layer_params(model: nn.Module, trace: gradientflow.Trace) -> list[list[nn.Parameter]]:
    """Parameters per layer in the trace's order, each shared parameter counted once."""
    modules = dict(model.named_modules())
    seen: set[int] = set()
    out = []
    for name in trace.layer_names:
        ps = [p for p in modules.get(name, model).parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in ps)
        out.append(ps)
    return out


def run_with_reference(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 6):
    """Train watched, recording per-parameter references at each step (by parameter id)."""
    data = digits()
    loss_fn = nn.CrossEntropyLoss()
    refs = []
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        for i, (x, y) in enumerate(batches(data.x_train, data.y_train, batch_size=32)):
            if i == steps:
                break
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            grads = {
                id(p): p.grad.detach().clone() for p in model.parameters() if p.grad is not None
            }
            before = {id(p): p.detach().clone() for p in model.parameters()}
            mon.log(loss=loss)
            opt.step()
            after = {id(p): p.detach().clone() for p in model.parameters()}
            refs.append((float(loss.detach()), grads, before, after))
    return mon.trace, refs


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_parameter_statistics_match_plain_computation(model_name: str, opt_name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[model_name]()
    opt = OPTIMIZERS[opt_name](list(model.parameters()))
    trace, refs = run_with_reference(model, opt)
    params = layer_params(model, trace)
    assert sum(len(p) for p in params) == len({id(p) for p in model.parameters()})
    for r, (loss, grads, before, after) in enumerate(refs):
        assert trace.steps[r] == r
        assert trace.scalars["loss"][r] == pytest.approx(loss, rel=1e-6)
        all_g = [g for g in grads.values()]
        assert trace.scalars["global_grad_norm"][r] == pytest.approx(norm_of(all_g), rel=1e-5)
        for j, ps in enumerate(params):
            g = [grads[id(p)] for p in ps]
            w = [before[id(p)] for p in ps]
            dw = [after[id(p)] - before[id(p)] for p in ps]
            m = {k: v[r, j] for k, v in trace.metrics.items()}
            assert m["grad_norm"] == pytest.approx(norm_of(g), rel=1e-5)
            assert m["weight_norm"] == pytest.approx(norm_of(w), rel=1e-5)
            assert m["update_norm"] == pytest.approx(norm_of(dw), rel=1e-3, abs=1e-9)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.float64(norm_of(dw)) / np.float64(norm_of(w))  # inf for a zero bias
            assert m["rel_update"] == pytest.approx(rel, rel=1e-3, abs=1e-9, nan_ok=True)
            n_small = sum(int((t.abs() < 1e-3).sum()) for t in w)
            assert m["zero_frac"] == pytest.approx(n_small / sum(t.numel() for t in w))
            assert m["nonfinite"] == 0


def test_tied_weight_counts_once() -> None:
    model = TiedAutoencoder()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trace, _ = run_with_reference(model, opt, steps=2)
    # enc owns the shared weight; dec keeps only its own bias
    dec = trace.layers[trace.layer_index("dec")]
    assert dec.n_params == 64
    assert sum(layer.n_params for layer in trace.layers) == sum(
        p.numel() for p in model.parameters()
    )


def test_layers_ordered_by_first_use_not_registration() -> None:
    model = FunctionalMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trace, _ = run_with_reference(model, opt, steps=1)
    assert trace.layer_names == ["inp", "hidden", "out"]
    assert [layer.input_activation for layer in trace.layers] == [None, "relu", "tanh"]


def _activation_references(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Inputs and outputs of each Linear/Conv, and dL/ds at each output, by plain autograd."""
    inputs, outputs = {}, {}
    handles = []
    for name, mod in model.named_modules():
        if any(True for _ in mod.parameters(recurse=False)):

            def pre(m, a, name=name):
                inputs[name] = a[0].detach()

            def post(m, a, out, name=name):
                out.retain_grad()
                outputs[name] = out

            handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    for h in handles:
        h.remove()
    model.zero_grad()
    return inputs, outputs


@pytest.mark.parametrize("model_name", ["mlp", "functional", "cnn_bn"])
def test_activation_statistics_match_plain_computation(model_name: str) -> None:
    torch.manual_seed(1)
    model = MODELS[model_name]()
    data = digits()
    x, y = data.x_train[:64], data.y_train[:64]
    inputs, outputs = _activation_references(model, x, y)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        opt.step()
    trace = mon.trace
    for j, name in enumerate(trace.layer_names):
        out = outputs[name]
        m = {k: v[0, j] for k, v in trace.metrics.items()}
        assert m["out_rms"] == pytest.approx(float(out.detach().double().pow(2).mean().sqrt()))
        assert m["out_grad_norm"] == pytest.approx(float(out.grad.double().norm()), rel=1e-5)
        act = trace.layers[j].input_activation
        if act is None:
            assert np.isnan(m["in_dead_frac"])
            continue
        inp = inputs[name]
        units = inp.transpose(0, 1).flatten(1).t() if inp.dim() == 4 else inp
        dead = float((units != 0).any(0).logical_not().double().mean())
        assert m["in_dead_frac"] == pytest.approx(dead)
        if act == "sigmoid":
            sat = float(((inp <= 0.01) | (inp >= 0.99)).double().mean())
        elif act == "tanh":
            sat = float((inp.abs() >= 0.99).double().mean())
        else:
            sat = 0.0
        assert m["in_sat_frac"] == pytest.approx(sat)


def test_dead_units_from_functional_relu_are_counted() -> None:
    model = FunctionalMLP()
    with torch.no_grad():
        model.inp.bias.fill_(-50.0)  # every unit of the first hidden layer dies
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    trace, _ = run_with_reference(model, opt, steps=1)
    assert trace.metrics["in_dead_frac"][0, trace.layer_index("hidden")] == 1.0
    assert trace.metrics["in_dead_frac"][0, trace.layer_index("out")] == 0.0


def test_gradient_accumulation_is_read_at_the_step() -> None:
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = digits()
    with gradientflow.watch(model, opt) as mon:
        opt.zero_grad()
        for k in range(3):  # three micro-batches, one step
            nn.CrossEntropyLoss()(
                model(data.x_train[k * 16 : (k + 1) * 16]), data.y_train[k * 16 : (k + 1) * 16]
            ).backward()
        expected = norm_of([p.grad for p in model[0].parameters()])
        opt.step()
    assert mon.trace.n_records == 1
    assert mon.trace.metrics["grad_norm"][0, 0] == pytest.approx(expected, rel=1e-6)


def test_manual_step_without_optimizer_measures_updates() -> None:
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = digits()
    expected_updates = []
    mon = gradientflow.watch(model, schedule=Schedule.everything()).attach()
    try:
        for _ in range(3):
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(model(data.x_train[:32]), data.y_train[:32])
            loss.backward()
            mon.step(loss=loss)
            before = [p.detach().clone() for p in model[0].parameters()]
            opt.step()
            now = list(model[0].parameters())
            expected_updates.append(
                norm_of([p.detach() - b for p, b in zip(now, before, strict=True)])
            )
    finally:
        trace = mon.detach()
    # each step's update is measured at the next call; the last one at detach()
    got = trace.metrics["update_norm"][:, 0]
    assert got == pytest.approx(expected_updates, rel=1e-5)
    assert trace.metrics["grad_norm"].shape == (3, 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lr", [1e-5, 0.05])
def test_sgd_update_of_half_precision_weights_is_the_real_change(
    dtype: torch.dtype, lr: float
) -> None:
    """Under plain SGD, half-precision weights round away an update below their resolution:
    at lr 1e-5 against weights near 1 nothing moves, and ||dw|| must read 0, not lr·||d||
    (what the step asked for); at lr 0.05 it must be the rounded change the weights made.
    Float32 weights keep the copy-free derivation."""
    from gradientflow.probes.updates import derivable_from_state

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(1.0 + 0.1 * torch.rand_like(p, dtype=torch.float32))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    changes = []
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 16).to(dtype)).float().square().mean().backward()
            before = [p.detach().double().clone() for p in model.parameters()]
            opt.step()
            after = [p.detach().double() for p in model.parameters()]
            changes.append([a - b for a, b in zip(after, before, strict=True)])
    got = mon.trace.metrics["update_norm"]
    params = layer_params(model, mon.trace)
    order = {id(p): k for k, p in enumerate(model.parameters())}
    for r, dw in enumerate(changes):
        for j, ps in enumerate(params):
            ref = norm_of([dw[order[id(p)]] for p in ps])
            assert got[r, j] == pytest.approx(ref, rel=1e-6, abs=0.0), (r, j)
    if lr == 1e-5:
        assert (got == 0).all()  # the weights did not move
    assert mon.trace.meta["update_method"] == "weight copy"
    fp32 = nn.Linear(2, 2)
    assert derivable_from_state(torch.optim.SGD(fp32.parameters(), lr=0.1), [*fp32.parameters()])
