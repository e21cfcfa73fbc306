"""Mean-field predictions for deep random networks: moved to :mod:`gradientflow.preflight.theory`.

This module re-exports them so the lab's experiments keep their imports.

>>> round(chi1("tanh", 1.0, 0.05), 3)
0.759
"""

from __future__ import annotations

from gradientflow.preflight.theory import (
    ACTIVATIONS,
    SELU_ALPHA,
    SELU_LAMBDA,
    chi1,
    critical_sigma_w2,
    depth_scale,
    gauss_expect,
    q_star,
)

__all__ = [
    "ACTIVATIONS",
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "chi1",
    "critical_sigma_w2",
    "depth_scale",
    "gauss_expect",
    "q_star",
]
