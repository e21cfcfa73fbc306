"""Hand-made traces and diagnoses for the report tests (no training needed)."""

from __future__ import annotations

import numpy as np

from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.trace import LayerInfo, Trace

N_LAYERS, N_STEPS = 6, 12


def vanishing(names: list[str] | None = None, *, rnn: bool = False) -> Trace:
    """A sigmoid MLP whose gradient norm falls by 10x per layer toward the input.

    grad_norm[r, j] = 10**(j - (L-1)) * (1 + r/10); rel_update measured every 4th row only;
    activations measured on the same rows; loss falls slowly.
    """
    names = names or [f"fc{i}" for i in range(N_LAYERS)]
    n = len(names)
    r = np.arange(N_STEPS)[:, None]
    grad = 10.0 ** (np.arange(n) - (n - 1))[None, :] * (1 + r / 10)
    full = (np.arange(N_STEPS) % 4 == 0).astype(float)
    rel = np.where(full[:, None] == 1, grad * 1e-2, np.nan)
    sat = np.where(full[:, None] == 1, np.linspace(0.8, 0.1, n)[None, :], np.nan)
    dead = np.where(full[:, None] == 1, np.linspace(0.0, 0.05, n)[None, :], np.nan)
    sat[:, 0] = dead[:, 0] = np.nan  # the input layer has no activation before it
    layers = [
        LayerInfo(x, "Linear", 100, True, None if i == 0 else "sigmoid")
        for i, x in enumerate(names)
    ]
    extras = {}
    if rnn:
        extras = {
            "bptt/rnn/dl_dh": np.array(
                [10.0 ** np.linspace(-6, 0, 20), 10.0 ** np.linspace(-3, 0, 20)]
            ),
            "bptt/rnn/steps": np.array([0, 50]),
        }
    return Trace.build(
        layers,
        steps=np.arange(N_STEPS) * 5,
        grad_norm=grad,
        rel_update=rel,
        out_grad_norm=grad / 2,
        in_sat_frac=sat,
        in_dead_frac=dead,
        full=full,
        loss=np.linspace(2.3, 2.2, N_STEPS),
        global_grad_norm=grad[:, -1],
        extras=extras,
    )


def diagnosis_for(trace: Trace) -> Diagnosis:
    names = trace.layer_names
    return Diagnosis(
        [
            Finding(
                "vanishing",
                "critical",
                names[:-2],
                {"ratio": 1e-5, "gain": [0.1, 0.1]},
                f"Gradients vanish toward the input: {names[0]} gets 1e-5 of {names[-1]}.",
                ["swap_activation:relu", "batchnorm"],
            ),
            Finding(
                "saturation",
                "warning",
                names[1:3],
                {"sat_frac": 0.8},
                "Sigmoid units are saturated.",
                ["batchnorm"],
            ),
        ]
    )
