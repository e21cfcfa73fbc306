"""Hand-made Traces for the rule unit tests: a chain of layers with a chosen per-layer gain."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow.trace import LayerInfo, Trace


def layers(depth: int, activation: str | None = "sigmoid", frozen: int = 0) -> list[LayerInfo]:
    """``fc0 .. fc{depth-1}``; the first has no input activation; the lowest ``frozen`` are
    not trainable."""
    return [
        LayerInfo(
            f"fc{j}",
            "Linear",
            100,
            trainable=j >= frozen,
            input_activation=None if j == 0 else activation,
        )
        for j in range(depth)
    ]


def chain(
    gain: float,
    depth: int = 20,
    steps: int = 20,
    *,
    noise: float = 0.0,
    rel_update: np.ndarray | None = None,
    activation: str | None = "sigmoid",
    frozen: int = 0,
    seed: int = 0,
    **columns: Any,
) -> Trace:
    """Every step, the gradient reaching layer j is ``gain ** (depth - 1 - j)`` (times a
    log-normal wobble of ``noise``), on both out_grad_norm and grad_norm."""
    rng = np.random.default_rng(seed)
    base = np.array([gain ** (depth - 1 - j) for j in range(depth)])
    g = base * np.exp(noise * rng.standard_normal((steps, depth)))
    cols: dict[str, Any] = {
        "out_grad_norm": g,
        "grad_norm": g.copy(),
        "global_grad_norm": np.sqrt((g**2).sum(1)),
        "full": np.ones(steps),
    }
    if rel_update is not None:
        cols["rel_update"] = np.tile(rel_update, (steps, 1))
    cols.update(columns)
    return Trace.build(layers(depth, activation, frozen), steps=range(steps), **cols)


def healthy(depth: int = 10, steps: int = 60, seed: int = 0) -> Trace:
    """A net whose every statistic looks fine: gain ~1, falling loss, steady weights."""
    rng = np.random.default_rng(seed)
    t = chain(
        1.0,
        depth,
        steps,
        noise=0.2,
        activation="relu",
        seed=seed,
        rel_update=np.full(depth, 1e-3),
        loss=2.3 * np.exp(-np.arange(steps) / 30) + 0.05 * rng.random(steps),
        weight_norm=np.full((steps, depth), 5.0) + 0.01 * np.arange(steps)[:, None],
        zero_frac=np.full((steps, depth), 0.01),
        out_rms=np.ones((steps, depth)) * (1 + 0.1 * rng.random((steps, depth))),
        in_dead_frac=np.full((steps, depth), 0.02),
        in_sat_frac=np.zeros((steps, depth)),
        nonfinite=np.zeros((steps, depth)),
    )
    return t
