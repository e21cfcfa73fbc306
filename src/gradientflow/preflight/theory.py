"""Mean-field predictions for deep random networks (Poole et al. 2016; Schoenholz et al. 2017).

A fully connected (or convolutional) net with weights of variance ``σ_w²/fan_in`` and biases of
second moment ``σ_b²`` drives the pre-activation variance of every layer to a fixed point ``q*``
of

    q_{l+1} = σ_w² · E_z[φ(√q_l · z)²] + σ_b²,        z ~ N(0, 1),

and, at that fixed point, the squared norm of the back-propagated gradient changes by the same
factor at every layer:

    χ₁ = σ_w² · E_z[φ'(√q* · z)²].

χ₁ < 1: gradients vanish toward the input; χ₁ > 1: they explode. The gradient depth scale is
``ξ = -1/ln χ₁`` and nets deeper than about ``6ξ`` do not train. Only the variance of the
weights enters (by the central limit theorem the pre-activations are Gaussian at large width),
so Gaussian and uniform inits of the same variance give the same χ₁.

The Gaussian expectations use probabilists' Gauss–Hermite quadrature for smooth φ (tanh,
sigmoid, GELU, erf, SiLU); activations with a kink at 0 (the ReLU family, ELU, SELU) are
integrated on the two half-lines apart, where Gauss–Hermite would be wrong (SCIENCE.md).

>>> round(chi1("tanh", 1.761, 0.05), 3)
1.0
>>> round(chi1("sigmoid", 1 / 3, 0.0), 3)
0.02
>>> round(chi1("leaky_relu", 2.0, 0.0), 4)  # slope 0.01: σ_w² (1 + 0.01²)/2
1.0001
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from gradientflow.errors import GradientFlowError

Fn = Callable[[np.ndarray], np.ndarray]

SELU_ALPHA = 1.6732632423543772848
SELU_LAMBDA = 1.0507009873554804934
LEAKY_SLOPE = 0.01
_SQRT2 = float(np.sqrt(2.0))
#: Activations with φ(a·x) = a·φ(x) for a > 0: their χ₁ does not depend on q.
HOMOGENEOUS = frozenset({"relu", "leaky_relu"})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _erf(x: np.ndarray) -> np.ndarray:
    return torch.special.erf(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(x / _SQRT2))


def _selu(x: np.ndarray) -> np.ndarray:
    return SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _selu_d(x: np.ndarray) -> np.ndarray:
    return SELU_LAMBDA * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _elu_d(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))


def _leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, LEAKY_SLOPE * x)


def _leaky_d(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, 1.0, LEAKY_SLOPE)


def _gelu(x: np.ndarray) -> np.ndarray:
    return x * _normal_cdf(x)


def _gelu_d(x: np.ndarray) -> np.ndarray:
    return _normal_cdf(x) + x * _normal_pdf(x)


def _silu_d(x: np.ndarray) -> np.ndarray:
    s = _sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


#: activation name (as in :mod:`gradientflow.kinds`, plus "erf") -> (φ, φ', has a kink at 0)
ACTIVATIONS: dict[str, tuple[Fn, Fn, bool]] = {
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, False),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)), False),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), True),
    "leaky_relu": (_leaky, _leaky_d, True),
    "elu": (_elu, _elu_d, True),
    "selu": (_selu, _selu_d, True),
    "gelu": (_gelu, _gelu_d, False),
    "silu": (lambda x: x * _sigmoid(x), _silu_d, False),
    "erf": (_erf, lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-(x**2)), False),
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
    return z, w * jac * _normal_pdf(z)


def gauss_expect(f: Fn, q: float, *, kink: bool = False, n: int = 201) -> float:
    """E_z[f(√q·z)] for z ~ N(0,1); ``kink=True`` integrates the two half-lines apart.

    >>> round(gauss_expect(lambda x: x**2, 2.0), 6)
    2.0
    """
    if not q >= 0:
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


def supported(name: str | None) -> bool:
    """Whether the mean-field theory here knows the activation ``name``."""
    return name in ACTIVATIONS


def q_map(activation: str, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """One layer of the variance map: σ_w² E[φ(√q z)²] + σ_b²."""
    phi, _, kink = _activation(activation)
    return sigma_w2 * gauss_expect(lambda x: phi(x) ** 2, q, kink=kink) + sigma_b2


def q_star(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """Fixed point of the pre-activation variance map, found numerically.

    Iterates the map from ``q0``; if it has not settled after 200 steps (slow convergence
    near the edge of chaos), the root of ``q_map(q) - q`` is bracketed and bisected. A map
    that diverges, or keeps growing past ``1e12`` (ReLU at σ_w² = 2 with a bias: q grows by σ_b²
    a layer), has no fixed point: :class:`GradientFlowError`.

    >>> round(q_star("tanh", 1.0, 0.05), 4)
    0.1936
    """
    q = q0
    for _ in range(200):
        q_next = q_map(activation, q, sigma_w2, sigma_b2)
        if not np.isfinite(q_next) or q_next > 1e12:
            raise GradientFlowError(
                f"q_star: the variance map of {activation} at σ_w² = {sigma_w2:g} diverges "
                "(no fixed point)"
            )
        if abs(q_next - q) < 1e-13 * max(1.0, q):
            return q_next
        q = q_next
    return _bisect_fixed_point(activation, sigma_w2, sigma_b2, q)


def _bisect_fixed_point(activation: str, sigma_w2: float, sigma_b2: float, q: float) -> float:
    def gap(x: float) -> float:
        return q_map(activation, x, sigma_w2, sigma_b2) - x

    lo, hi = q, q
    while gap(lo) < 0 and lo > 1e-12:
        lo /= 2
    if gap(lo) < 0:
        lo = 0.0  # q_map(0) = σ_b² + σ_w² φ(0)² >= 0: the fixed point is in [0, lo]
    while gap(hi) > 0 and hi < 1e12:
        hi *= 2
    if gap(hi) > 0:
        raise GradientFlowError(
            f"q_star: the variance map of {activation} at σ_w² = {sigma_w2:g}, σ_b² = "
            f"{sigma_b2:g} keeps growing past q = {hi:.0e} (no fixed point)"
        )
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def chi1_at(activation: str, sigma_w2: float, q: float) -> float:
    """σ_w² E[φ'(√q z)²]: the squared-gradient gain of one layer whose input variance is q."""
    _, dphi, kink = _activation(activation)
    return sigma_w2 * gauss_expect(lambda x: dphi(x) ** 2, q, kink=kink)


def chi1(activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """Per-layer gain of the squared gradient norm at the fixed point, σ_w² E[φ'(√q* z)²].

    For the ReLU family φ' does not depend on the scale of its input, so χ₁ holds at any q
    (the variance may grow without a fixed point, σ_w² > 2 for ReLU).

    >>> round(chi1("relu", 2.0, 0.0), 6)
    1.0
    """
    if activation in HOMOGENEOUS:
        return chi1_at(activation, sigma_w2, 1.0)
    return chi1_at(activation, sigma_w2, q_star(activation, sigma_w2, sigma_b2))


def depth_scale(chi: float) -> float:
    """Gradient depth scale ξ = -1/ln χ₁ (infinite at χ₁ = 1; for χ₁ > 1, 1/ln χ₁).

    >>> round(depth_scale(0.759), 2)
    3.63
    """
    if not chi > 0:
        raise GradientFlowError(f"depth_scale: χ₁ must be > 0, got {chi}")
    return float("inf") if chi == 1.0 else float(1.0 / abs(np.log(chi)))


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
