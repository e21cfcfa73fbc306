"""Clipping: the recorded gradient is the pre-clip one, the post-clip one is kept beside it.

The references are taken in the loop right before the clipping call (pre-clip) and right after
it (post-clip), from ``p.grad``, and compared with the Trace at every step.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import Schedule
from gradientflow.clipping import ClipReader, clipping_targets
from gradientflow.diagnosis import diagnose
from gradientflow.remedies import clip_gradients
from gradientflow.trace import Trace
from tests.integrations.grad_reference import GradSnapshots, assert_matches

STEPS, SPIKE_AT = 60, 40


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )


def _train_clipped(seed: int, clip: str = "norm") -> tuple[Trace, GradSnapshots, GradSnapshots]:
    """SGD with clipping at 1.0 every step; at SPIKE_AT the gradient jumps by 1e3 per entry
    while the loss keeps its value (a term worth 0 with gradient 1e3: a gradient explosion, not
    a hard batch, whose loss would jump with its gradient)."""
    torch.manual_seed(seed)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    pre, post = GradSnapshots(model), GradSnapshots(model)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        for step in range(STEPS):
            xb, yb = x[step % 8 :: 8], y[step % 8 :: 8]
            opt.zero_grad()
            loss = (model(xb) - yb).pow(2).mean()
            if step == SPIKE_AT:
                loss = loss + 1e3 * sum(p.sum() - p.sum().detach() for p in model.parameters())
            loss.backward()
            pre.snap()
            pre.close_step()
            if clip == "norm":
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # a generator, as people pass it
            else:
                torch.nn.utils.clip_grad.clip_grad_value_(model.parameters(), 0.01)
            post.snap()
            post.close_step()
            mon.log(loss=loss)
            opt.step()
    return mon.trace, pre, post


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_clipped_spike_is_reported_as_exploding(seed: int) -> None:
    trace, pre, post = _train_clipped(seed)
    names = trace.layer_names
    assert_matches(trace.metrics["grad_norm"], pre.per_layer(names))
    assert_matches(trace.metrics["grad_norm_postclip"], post.per_layer(names))
    g = trace.scalars["global_grad_norm"]
    assert g[SPIKE_AT] > 1000 and g[SPIKE_AT] > 1000 * np.median(g[:SPIKE_AT])
    post_global = np.sqrt(np.square(trace.metrics["grad_norm_postclip"]).sum(axis=1))
    assert post_global.max() <= 1.0 + 1e-5  # what the optimizer saw: clipped at 1
    found = diagnose(trace).of_kind("exploding")
    assert found and found[0].severity in ("warning", "critical")
    # the same run read after clipping (the old measuring point) hides the explosion
    hidden = Trace.build(
        names,
        steps=trace.steps,
        loss=trace.scalars["loss"],
        grad_norm=trace.metrics["grad_norm_postclip"],
        global_grad_norm=post_global,
    )
    assert not diagnose(hidden).of_kind("exploding")


def test_clip_grad_value_is_caught_too() -> None:
    trace, pre, post = _train_clipped(0, clip="value")
    assert_matches(trace.metrics["grad_norm"], pre.per_layer(trace.layer_names))
    assert_matches(trace.metrics["grad_norm_postclip"], post.per_layer(trace.layer_names))
    assert trace.scalars["global_grad_norm"][SPIKE_AT] > 1000


def test_no_clipping_leaves_postclip_empty_and_functions_restored() -> None:
    originals = [getattr(m, n) for m, n in clipping_targets()]
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gradientflow.watch(model, opt) as mon:
        assert [getattr(m, n) for m, n in clipping_targets()] != originals  # wrapped while on
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
    assert [getattr(m, n) for m, n in clipping_targets()] == originals
    assert np.isnan(mon.trace.metrics["grad_norm_postclip"]).all()


def test_nested_monitors_each_read_their_own_and_restore_once() -> None:
    originals = [getattr(m, n) for m, n in clipping_targets()]
    a, b = _mlp(), _mlp()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.01)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.01)
    mon_a = gradientflow.watch(a, opt_a).attach()
    with gradientflow.watch(b, opt_b) as mon_b:
        for opt, model, scale in ((opt_a, a, 1e4), (opt_b, b, 1.0)):
            opt.zero_grad()
            (model(torch.randn(4, 8)).sum() * scale).backward()
        true_a = float(torch.cat([p.grad.flatten() for p in a.parameters()]).norm())
        nn.utils.clip_grad_norm_(a.parameters(), 1.0)  # only a's parameters are clipped
        opt_a.step()
        opt_b.step()
    assert [getattr(m, n) for m, n in clipping_targets()] != originals  # a is still attached
    trace_a = mon_a.detach()
    assert [getattr(m, n) for m, n in clipping_targets()] == originals
    assert trace_a.scalars["global_grad_norm"][0] == pytest.approx(true_a, rel=1e-5)
    assert np.isfinite(trace_a.metrics["grad_norm_postclip"]).all()
    assert np.isnan(mon_b.trace.metrics["grad_norm_postclip"]).all()


def test_other_threads_are_not_read() -> None:
    w = nn.Parameter(torch.zeros(3))
    w.grad = torch.tensor([3.0, 4.0, 0.0])
    with ClipReader({id(w)}, lambda: float(w.grad.norm())) as reader:
        worker = threading.Thread(target=nn.utils.clip_grad_norm_, args=([w], 1.0))
        worker.start()
        worker.join()
        assert reader.take() is None  # the other thread's clip passed straight through
        assert float(w.grad.norm()) == pytest.approx(1.0)


def test_a_clipper_hook_after_the_monitor_shifts_nothing() -> None:
    """The clip_gradients remedy clips in its own step pre-hook, after the monitor's: the
    monitor has read the true gradient already; the clip must not leak into the next step."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ref = GradSnapshots(model)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        clipper = clip_gradients(0.1).attach(opt)
        for _ in range(5):
            opt.zero_grad()
            (model(torch.randn(16, 8)).pow(2).sum() * 10).backward()
            ref.snap()
            ref.close_step()
            opt.step()
        clipper.detach()
    assert clipper.clipped == 5
    assert_matches(mon.trace.metrics["grad_norm"], ref.per_layer(mon.trace.layer_names))


def test_gradscaler_accumulation_and_clipping_read_unscaled_preclip() -> None:
    """The AMP recipe: scale, backward twice (accumulation), unscale_, clip, scaler.step."""
    torch.manual_seed(0)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    ref = GradSnapshots(model)
    with gradientflow.watch(model, opt, scaler=scaler, schedule=Schedule.everything()) as mon:
        for _ in range(4):
            opt.zero_grad()
            for _ in range(2):  # two micro-batches
                scaler.scale(model(torch.randn(16, 8)).pow(2).mean() * 50).backward()
            scaler.unscale_(opt)
            ref.snap()  # accumulated, unscaled, not yet clipped
            ref.close_step()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            scaler.step(opt)
            scaler.update()
    trace = mon.trace
    assert_matches(trace.metrics["grad_norm"], ref.per_layer(trace.layer_names))
    assert trace.scalars["global_grad_norm"].min() > 0.5  # the clip did cut every step
    post = np.sqrt(np.square(trace.metrics["grad_norm_postclip"]).sum(axis=1))
    np.testing.assert_allclose(post, 0.5, rtol=1e-4)


def test_manual_steps_read_preclip_too() -> None:
    """Without an optimizer: backward, clip, monitor.step() records the pre-clip norms."""
    model = _mlp()
    ref = GradSnapshots(model)
    with gradientflow.watch(model, schedule=Schedule.everything()) as mon:
        for _ in range(3):
            model.zero_grad()
            (model(torch.randn(16, 8)).pow(2).sum() * 100).backward()
            ref.snap()
            ref.close_step()
            nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            mon.step()
    trace = mon.trace
    assert_matches(trace.metrics["grad_norm"], ref.per_layer(trace.layer_names))
    post = np.sqrt(np.square(trace.metrics["grad_norm_postclip"]).sum(axis=1))
    np.testing.assert_allclose(post, 0.1, rtol=1e-4)


def test_clipping_another_optimizers_parameters_is_not_the_watched_steps_reading() -> None:
    """A GAN-like loop: the discriminator's gradients are clipped before its own step, the
    generator's (watched) before theirs. The generator's recorded pre-clip norms are its own,
    read at its own clip: the discriminator's clip used to take the reading (NaN for the
    generator's layers then, the previous iteration's clipped values later)."""
    torch.manual_seed(0)
    gen, disc = nn.Linear(4, 4), nn.Linear(4, 1)
    both = nn.ModuleDict({"gen": gen, "disc": disc})
    opt_g = torch.optim.SGD(gen.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.1)
    refs = []
    with gradientflow.watch(both, opt_g, schedule=Schedule.everything()) as mon:
        for _ in range(4):
            x = torch.randn(16, 4)
            opt_d.zero_grad()
            disc(gen(x).detach()).pow(2).mean().backward()
            nn.utils.clip_grad_norm_(disc.parameters(), 0.01)
            opt_d.step()
            opt_g.zero_grad()
            (-disc(gen(x)).pow(2).mean()).backward()
            refs.append(
                float(
                    torch.linalg.vector_norm(
                        torch.cat([p.grad.flatten() for p in gen.parameters()])
                    )
                )
            )
            nn.utils.clip_grad_norm_(gen.parameters(), 0.01)
            opt_g.step()
    layers = mon.trace.layer_names
    got = mon.trace.metrics["grad_norm"][:, layers.index("gen")]
    assert got == pytest.approx(refs, rel=1e-6)
    assert (mon.trace.metrics["grad_norm_postclip"][:, layers.index("gen")] <= 0.01 + 1e-7).all()


def test_a_clip_after_every_micro_batch_reads_the_steps_whole_gradient() -> None:
    """Accumulation over 3 micro-batches with a clip after each (accelerate's
    clip_grad_norm_ called unguarded): the step's pre-clip norms are those at its last clip,
    when the gradient is whole (the first clip's reading was a third of it); a second clip of
    the same gradients (a value clip after the norm clip) keeps the reading before the first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    at_last_clip = []
    with gradientflow.watch(model, opt) as mon:
        for _ in range(4):
            opt.zero_grad()
            for _ in range(3):
                (model(torch.randn(8, 4)).pow(2).mean() * 10).backward()
                grads = [p.grad.flatten() for p in model.parameters()]
                before = float(torch.linalg.vector_norm(torch.cat(grads)))
                nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            nn.utils.clip_grad_value_(model.parameters(), 0.01)  # same gradients again
            at_last_clip.append(before)
            opt.step()
    assert mon.trace.scalars["global_grad_norm"] == pytest.approx(at_last_clip, rel=1e-6)


def test_a_clip_of_other_parameters_between_two_clips_keeps_the_first_reading() -> None:
    """Norm clip of the watched gradients, a clip of another optimizer's parameters, then a
    value clip of the same watched gradients: no backward came in between, so the reading
    stays the one before the first clip (the other clip does not count as a change)."""
    torch.manual_seed(0)
    gen, disc = nn.Linear(4, 4), nn.Linear(4, 1)
    both = nn.ModuleDict({"gen": gen, "disc": disc})
    opt = torch.optim.SGD(gen.parameters(), lr=0.1)
    before = []
    with gradientflow.watch(both, opt) as mon:
        for _ in range(3):
            opt.zero_grad()
            both.zero_grad()
            disc(gen(torch.randn(8, 4))).pow(2).mean().mul(100).backward()
            before.append(float(torch.cat([p.grad.flatten() for p in gen.parameters()]).norm()))
            nn.utils.clip_grad_norm_(gen.parameters(), 0.5)
            nn.utils.clip_grad_norm_(disc.parameters(), 0.01)
            nn.utils.clip_grad_value_(gen.parameters(), 0.01)
            opt.step()
    layers = mon.trace.layer_names
    assert mon.trace.metrics["grad_norm"][:, layers.index("gen")] == pytest.approx(before, rel=1e-6)
