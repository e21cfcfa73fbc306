"""The static lint: architectures and inits known to make gradients vanish or explode.

Each check reads the model's modules and the weights as they are (σ_w² = fan_in · Var(w), from
the measurement) and returns :class:`~gradientflow.diagnosis.findings.Finding` objects with
``evidence["lint"] = True``:

* ``deep_squashing_stack`` — 8 or more sigmoid/tanh links with no normalisation and no skip
  (a warning for sigmoid, whose slope is at most 1/4; information for tanh, which an init can
  bring to its critical point);
* ``relu_default_init`` — ReLU-family layers at PyTorch's default init (σ_w² ≈ 1/3, a sixth of
  the χ₁ = 1 of He's σ_w² = 2);
* ``selu_init`` / ``selu_dropout`` — SELU without LeCun-normal init (σ_w² = 1), or with plain
  ``nn.Dropout`` instead of ``nn.AlphaDropout`` (Klambauer et al. 2017);
* ``vanishing_through_time`` / ``exploding_through_time`` — a vanilla RNN whose recurrent
  Jacobian's horizon is shorter than the sequence (Pascanu et al. 2013);
* ``post_ln_transformer`` — post-LN transformer layers, which need a learning-rate warmup.

>>> from torch import nn
>>> lint_modules(nn.Sequential(nn.Linear(4, 4), nn.SELU(), nn.Dropout(), nn.Linear(4, 2)))[0].kind
'selu_dropout'
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.kinds import NORM_KINDS
from gradientflow.preflight.measure import LayerStat

#: A sigmoid/tanh stack with this many links or more counts as deep.
DEEP = 8
#: PyTorch's default init gives σ_w² = 1/3; anything in this band is taken for it.
DEFAULT_BAND = (0.2, 0.45)
#: SELU's fixed point needs σ_w² = 1 (LeCun normal); outside this band it drifts.
LECUN_BAND = (0.8, 1.25)
#: A post-LN stack this deep is a warning (shallower: information).
POST_LN_DEEP = 6
RELU_FAMILY = frozenset({"relu", "leaky_relu", "prelu", "rrelu", "relu6"})


def _finding(
    kind: str,
    severity: Severity,
    layers: list[str],
    ev: dict[str, Any],
    text: str,
    remedies: list[str],
) -> Finding:
    return Finding(kind, severity, layers, {"lint": True, **ev}, text, remedies)


def _has_norm(model: nn.Module) -> bool:
    return any(type(m).__name__ in NORM_KINDS for m in model.modules())


def lint_squashing(
    model: nn.Module, stats: list[LayerStat], flow: float | None = None
) -> list[Finding]:
    """Deep sigmoid/tanh stacks; ``flow`` is the measured first/last gradient ratio."""
    healthy = flow is not None and 1e-2 <= flow <= 1e2
    out = []
    for act in ("sigmoid", "tanh"):
        fed = [s.name for s in stats if s.link == act]
        plain = all(s.link is not None for s in stats[1:])
        if len(fed) < DEEP or not plain or _has_norm(model):
            continue
        bound = "1/4" if act == "sigmoid" else "1"
        text = (
            f"{len(fed)} layers in a row are fed through {act} (slope at most {bound}) with no "
            "normalisation and no skip connection: the chain rule multiplies those slopes, so "
            "the gradient can shrink geometrically with depth."
        )
        if act == "tanh":
            text += " An init at tanh's critical point (σ_w² ≈ 1.76 for σ_b² = 0.05) avoids it."
        if healthy:
            text += " Here the gradient measured at init still reaches the first layer."
        severity: Severity = "warning" if act == "sigmoid" and not healthy else "info"
        remedies = ["swap_activation:relu", "add_batchnorm", "add_residual", "reinit:lsuv"]
        out.append(
            _finding("deep_squashing_stack", severity, fed, {"links": len(fed)}, text, remedies)
        )
    return out


def lint_inits(stats: list[LayerStat]) -> list[Finding]:
    out = []
    relu = [s for s in stats if s.link in RELU_FAMILY]
    default = [s.name for s in relu if DEFAULT_BAND[0] <= s.sigma_w2 <= DEFAULT_BAND[1]]
    if len(default) >= 2:
        severity: Severity = "warning" if len(stats) >= 5 else "info"
        text = (
            f"{len(default)} ReLU-family layers have PyTorch's default init (σ_w² ≈ 1/3): each "
            "one multiplies the squared gradient by about 1/6 instead of 1. He init (σ_w² = 2) "
            "keeps it at 1."
        )
        out.append(
            _finding(
                "relu_default_init",
                severity,
                default,
                {"layers": len(default)},
                text,
                ["reinit:he", "reinit:lsuv"],
            )
        )
    selu = [s for s in stats if s.link == "selu"]
    off = [s for s in selu if not LECUN_BAND[0] <= s.sigma_w2 <= LECUN_BAND[1]]
    if off:
        sw2 = sorted(round(s.sigma_w2, 2) for s in off)
        text = (
            f"{len(off)} SELU-fed layers do not have LeCun-normal init (σ_w² from {sw2[0]} to "
            f"{sw2[-1]}, not 1): SELU's self-normalising fixed point (mean 0, variance 1) "
            "needs Var(w) = 1/fan_in."
        )
        out.append(
            _finding(
                "selu_init",
                "warning",
                [s.name for s in off],
                {"sigma_w2": sw2},
                text,
                ["reinit:lecun"],
            )
        )
    return out


def lint_modules(model: nn.Module) -> list[Finding]:
    """Checks that need only the modules: SELU with plain Dropout, post-LN transformers."""
    out = []
    mods = dict(model.named_modules())
    has_selu = any(isinstance(m, nn.SELU) for m in mods.values())
    drop = [n for n, m in mods.items() if type(m) is nn.Dropout]
    if has_selu and drop:
        text = (
            "SELU with plain Dropout: Dropout moves the activations off SELU's fixed point "
            "(mean 0, variance 1); AlphaDropout keeps them there (Klambauer et al. 2017)."
        )
        out.append(
            _finding(
                "selu_dropout", "warning", drop, {"dropout": drop}, text, ["swap_activation:selu"]
            )
        )
    post = [
        n
        for n, m in mods.items()
        if isinstance(m, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer)
        and not getattr(m, "norm_first", False)
    ]
    if post:
        severity: Severity = "warning" if len(post) >= POST_LN_DEEP else "info"
        text = (
            f"{len(post)} post-LN transformer layers (LayerNorm after the residual add): their "
            "gradients near the output are large at init, and they train only with a "
            "learning-rate warmup; norm_first=True (pre-LN) does not need one."
        )
        out.append(
            _finding(
                "post_ln_transformer", severity, post, {"layers": len(post)}, text, ["lower_lr"]
            )
        )
    return out


def lint_recurrent(infos: list[dict[str, Any]]) -> list[Finding]:
    """Vanilla RNNs whose horizon at init is shorter than the sequence."""
    out = []
    for info in infos:
        horizon, steps = info.get("horizon"), info["steps"]
        if horizon is None or info.get("jacobian_radius") is None:
            continue
        rho = info["jacobian_radius"]
        name = info["layer"]
        if rho < 1 and horizon < steps - 1:
            text = (
                f"Vanilla RNN '{name}': at init its mean recurrent Jacobian has spectral radius "
                f"{rho:.2f}, so a gradient falls under 1/1000 after about {horizon:.0f} steps, "
                f"but the sequence has {steps}: what happened earlier barely trains."
            )
            out.append(
                _finding(
                    "vanishing_through_time",
                    "warning",
                    [name],
                    dict(info),
                    text,
                    ["to_lstm", "to_gru", "reinit:orthogonal"],
                )
            )
        elif rho > 1:
            text = (
                f"Vanilla RNN '{name}': at init its mean recurrent Jacobian has spectral radius "
                f"{rho:.2f} > 1, so gradients can grow as {rho:.2f}^t through {steps} steps."
            )
            out.append(
                _finding(
                    "exploding_through_time",
                    "warning",
                    [name],
                    dict(info),
                    text,
                    ["clip_gradients", "to_lstm", "reinit:orthogonal"],
                )
            )
    return out


def lint(
    model: nn.Module,
    stats: list[LayerStat],
    infos: list[dict[str, Any]],
    flow: float | None = None,
) -> list[Finding]:
    """All the lint checks (``flow``: the measured first/last gradient ratio, if any)."""
    return [
        *lint_squashing(model, stats, flow),
        *lint_inits(stats),
        *lint_modules(model),
        *lint_recurrent(infos),
    ]
