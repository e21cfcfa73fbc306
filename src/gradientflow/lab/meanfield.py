"""Mean-field predictions for deep random networks (Poole et al. 2016; Schoenholz et al. 2017).

A fully connected net with weights ``W ~ N(0, σ_w²/fan_in)`` and biases ``b ~ N(0, σ_b²)``
drives the pre-activation variance of every layer to a fixed point ``q*`` of

    q_{l+1} = σ_w² · E_z[φ(√q_l · z)²] + σ_b²,        z ~ N(0, 1),

and, at that fixed point, the squared norm of the back-propagated gradient changes by the
same factor at every layer:

    χ₁ = σ_w² · E_z[φ'(√q* · z)²].

χ₁ < 1: gradients vanish toward the input; χ₁ > 1: they explode. The gradient depth scale is
``ξ = -1/ln χ₁`` and nets deeper than about ``6ξ`` do not train.

The Gaussian expectations use probabilists' Gauss–Hermite quadrature, which is exact enough for
smooth φ (tanh, sigmoid, SELU is handled by splitting at the kink at 0).

>>> round(chi1("tanh", 1.761, 0.05), 3)
1.0
>>> round(chi1("sigmoid", 1 / 3, 0.0), 3)
0.02
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from gradientflow.errors import GradientFlowError

Fn = Callable[[np.ndarray], np.ndarray]

SELU_ALPHA = 1.6732632423543772848
SELU_LAMBDA = 1.0507009873554804934


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _selu(x: np.ndarray) -> np.ndarray:
    return SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _selu_d(x: np.ndarray) -> np.ndarray:
    return SELU_LAMBDA * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


#: activation name -> (φ, φ', has a kink at 0)
ACTIVATIONS: dict[str, tuple[Fn, Fn, bool]] = {
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, False),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)), False),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), True),
    "selu": (_selu, _selu_d, True),
}


@lru_cache(maxsize=4)
def _nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / w.sum()


@lru_cache(maxsize=4)
def _half_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E[f(z); z > 0] with z ~ N(0,1): Gauss–Legendre on z = t/(1-t)."""
    t, w = np.polynomial.legendre.leggauss(n)
    t, w = (t + 1) / 2, w / 2  # on (0, 1)
    z = t / (1 - t)
    jac = 1.0 / (1 - t) ** 2
    dens = np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
    return z, w * jac * dens


def gauss_expect(f: Fn, q: float, *, kink: bool = False, n: int = 201) -> float:
    """E_z[f(√q·z)] for z ~ N(0,1); ``kink=True`` integrates the two half-lines apart.

    >>> round(gauss_expect(lambda x: x**2, 2.0), 6)
    2.0
    """
    if q < 0:
        raise GradientFlowError(f"gauss_expect: variance q must be >= 0, got {q}")
    s = np.sqrt(q)
    if not kink:
        z, w = _nodes(n)
        return float(np.sum(w * f(s * z)))
    z, w = _half_nodes(n)
    return float(np.sum(w * f(s * z)) + np.sum(w * f(-s * z)))


def _activation(name: str) -> tuple[Fn, Fn, bool]:
    if name not in ACTIVATIONS:
        raise GradientFlowError(
            f"mean field: unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


def q_star(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """Fixed point of the pre-activation variance map (iterated from ``q0``).

    >>> round(q_star("tanh", 1.0, 0.05), 4)
    0.1936
    """
    phi, _, kink = _activation(activation)
    q = q0
    for _ in range(5000):
        q_next = sigma_w2 * gauss_expect(lambda x: phi(x) ** 2, q, kink=kink) + sigma_b2
        if abs(q_next - q) < 1e-13 * max(1.0, q):
            return q_next
        q = q_next
    return q


def chi1(activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """Per-layer gain of the squared gradient norm at the fixed point, σ_w² E[φ'(√q* z)²].

    >>> round(chi1("relu", 2.0, 0.0), 6)
    1.0
    """
    _, dphi, kink = _activation(activation)
    q = q_star(activation, sigma_w2, sigma_b2)
    return sigma_w2 * gauss_expect(lambda x: dphi(x) ** 2, q, kink=kink)


def depth_scale(chi: float) -> float:
    """Gradient depth scale ξ = -1/ln χ₁ (infinite at χ₁ = 1).

    >>> round(depth_scale(0.759), 2)
    3.63
    """
    if chi <= 0:
        raise GradientFlowError(f"depth_scale: χ₁ must be > 0, got {chi}")
    return float("inf") if chi == 1.0 else float(-1.0 / np.log(chi))


def critical_sigma_w2(activation: str, sigma_b2: float, lo: float = 0.5, hi: float = 8.0) -> float:
    """The σ_w² at which χ₁ = 1 (the edge of chaos), by bisection.

    >>> round(critical_sigma_w2("tanh", 0.05), 2)
    1.76
    """
    if (chi1(activation, lo, sigma_b2) - 1) * (chi1(activation, hi, sigma_b2) - 1) > 0:
        raise GradientFlowError(
            f"critical_sigma_w2: χ₁ - 1 does not change sign on [{lo}, {hi}] for {activation}"
        )
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if chi1(activation, mid, sigma_b2) < 1.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
