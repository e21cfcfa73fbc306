"""``layerwise_pretrain``: the article's "multi-level hierarchy", greedy layer by layer.

Hinton et al. (2006) and Bengio et al. (2007) trained deep nets that plain back-propagation
could not: pretrain one layer at a time, unsupervised, on the output of the layers below (here
as an autoencoder: the layer encodes, a throw-away linear decoder reconstructs the layer's input),
then fine-tune the whole stack with the real loss. Each layer starts from weights that keep the
information of its input, not from noise that the vanishing gradient cannot fix.

The model must be an ``nn.Sequential`` whose weight layers are ``nn.Linear``; every Linear but the
last (the output layer) is pretrained together with the modules after it up to the next Linear
(its activation, norm, dropout).

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Sigmoid(),
...                       nn.Linear(6, 2))
>>> data = [(torch.randn(16, 8), torch.zeros(16)) for _ in range(4)]
>>> new = layerwise_pretrain(model, data, steps_per_layer=20)
>>> torch.equal(new[4].weight, model[4].weight), torch.equal(new[0].weight, model[0].weight)
(True, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.modules import WEIGHT_LAYERS, clone
from gradientflow.remedies.remedy import Remedy


def _stages(model: nn.Sequential) -> tuple[list[nn.Module], list[list[nn.Module]]]:
    """(prefix before the first Linear, stages each starting with a Linear)."""
    prefix: list[nn.Module] = []
    stages: list[list[nn.Module]] = []
    for i, module in enumerate(model):
        if isinstance(module, WEIGHT_LAYERS) and not isinstance(module, nn.Linear):
            raise GradientFlowError(
                f"layerwise_pretrain(): module '{i}' is a {type(module).__name__}; only "
                "Linear layers can be pretrained as autoencoders here"
            )
        if isinstance(module, nn.Linear):
            stages.append([module])
        elif stages:
            stages[-1].append(module)
        else:
            prefix.append(module)
    if len(stages) < 2:
        raise GradientFlowError(
            "layerwise_pretrain(): the model needs at least two Linear layers (hidden + output)"
        )
    return prefix, stages


def _inputs(batches: Iterable[Any]) -> list[torch.Tensor]:
    xs = []
    for batch in batches:
        x = batch[0] if isinstance(batch, tuple | list) else batch
        if not isinstance(x, torch.Tensor):
            raise GradientFlowError(
                "layerwise_pretrain(): each batch must be a tensor or an (inputs, targets) "
                f"pair, got {type(x).__name__}"
            )
        if not x.is_floating_point():
            raise GradientFlowError(
                "layerwise_pretrain(): `batches` must hold floating-point inputs (an autoencoder "
                f"reconstructs them), got {x.dtype}; for token ids, pretrain after the embedding"
            )
        if x.dim() == 0 or x.shape[0] == 0:
            raise GradientFlowError(
                f"layerwise_pretrain(): `batches` holds an empty batch (shape {tuple(x.shape)})"
            )
        xs.append(x)
    if not xs:
        raise GradientFlowError("layerwise_pretrain(): `batches` is empty")
    return xs


def _check_args(steps_per_layer: int | None, lr: float, noise: float) -> None:
    if steps_per_layer is not None and (
        isinstance(steps_per_layer, bool)
        or not isinstance(steps_per_layer, int)
        or steps_per_layer < 1
    ):
        raise GradientFlowError(
            "layerwise_pretrain(): `steps_per_layer` must be a whole number >= 1 (or None for "
            f"one pass over the batches), got {steps_per_layer!r}"
        )
    if not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise GradientFlowError(f"layerwise_pretrain(): `lr` must be a number > 0, got {lr!r}")
    if not isinstance(noise, int | float) or not math.isfinite(noise) or noise < 0:
        raise GradientFlowError(
            f"layerwise_pretrain(): `noise` must be a number >= 0 (0: no noise), got {noise!r}"
        )


@torch.no_grad()
def _forward(modules: list[nn.Module], xs: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for x in xs:
        for m in modules:
            x = m(x)
        out.append(x)
    return out


def _pretrain_stage(
    stage: list[nn.Module], xs: list[torch.Tensor], steps: int, lr: float, noise: float
) -> float:
    """Train one stage as an autoencoder of its inputs; returns the last reconstruction MSE."""
    encoder = nn.Sequential(*stage)
    first: nn.Linear = stage[0]  # type: ignore[assignment]
    decoder = nn.Linear(first.out_features, first.in_features).to(
        device=first.weight.device, dtype=first.weight.dtype
    )
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    encoder.train()
    # the decoder predicts the standardised input: deep sigmoid layers vary little, and a plain
    # MSE would let them reconstruct "about 0.5" well while losing what the input said
    flat = torch.cat(xs)
    mean, var = flat.mean(0), flat.var(0, unbiased=False)
    std = var.clamp_min(1e-2 * float(var.mean()) + 1e-12).sqrt()
    with torch.no_grad():
        decoder.bias.zero_()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        x = xs[step % len(xs)]
        noisy = x + noise * torch.randn_like(x) if noise > 0 else x
        loss = (decoder(encoder(noisy)) - (x - mean) / std).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def layerwise_pretrain(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    steps_per_layer: int | None = None,
    lr: float = 1e-2,
    noise: float = 0.0,
) -> nn.Module:
    """A copy of ``model`` whose hidden layers were pretrained greedily as autoencoders.

    ``batches`` yields inputs or ``(inputs, targets)`` pairs (targets are not used).
    ``steps_per_layer`` Adam steps (``lr``) per layer: by default one pass over ``batches``,
    at most 200;
    ``noise`` > 0 makes them denoising autoencoders (Vincent et al. 2008). The decoder
    reconstructs the *standardised* input, so a deep layer whose outputs barely vary still has
    to keep what they say (with a plain MSE, sigmoid codes shrink layer after layer and the top
    of a 20-layer stack carries nothing). The output layer keeps its values; fine-tune the
    returned model as usual; every module keeps its own train/eval flag. The last
    reconstruction errors (relative to the input's variance) are in ``new.pretrain_mse`` (a
    list, input layer first). ``steps_per_layer`` must be >= 1, ``lr`` > 0, ``noise`` >= 0, and
    the inputs floating-point.

    >>> import torch
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> len(layerwise_pretrain(m, [torch.randn(8, 4)], steps_per_layer=5).pretrain_mse)
    1
    """
    if not isinstance(model, nn.Sequential):
        raise GradientFlowError(
            f"layerwise_pretrain(): needs an nn.Sequential of Linear layers, got "
            f"{type(model).__name__}"
        )
    _check_args(steps_per_layer, lr, noise)
    new = clone(model, "layerwise_pretrain")
    prefix, stages = _stages(new)  # type: ignore[arg-type]
    xs = _inputs(batches)
    steps = min(len(xs), 200) if steps_per_layer is None else steps_per_layer
    modes = [(m, m.training) for m in new.modules()]  # each module's own flag, given back
    new.eval()  # inputs of each stage: no dropout, running norm statistics
    h = _forward(prefix, xs)
    errors = []
    names = {id(m): name for name, m in new.named_modules()}
    for stage in stages[:-1]:
        try:
            errors.append(_pretrain_stage(stage, h, steps, lr, noise))
        except (RuntimeError, ValueError) as exc:  # e.g. a BatchNorm given batches of one
            first = ", ".join(repr(names.get(id(m), "?")) for m in stage)
            raise GradientFlowError(
                f"layerwise_pretrain(): training the autoencoder of the stage ({first}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for m in stage:
            m.eval()
        h = _forward(stage, h)
    for m, training in modes:
        m.training = training
    setattr(new, "pretrain_mse", errors)  # noqa: B010
    return new


def applies(model: nn.Module) -> str | None:
    """None when ``model`` is an ``nn.Sequential`` of at least 3 Linear layers (and no Conv),
    else the reason :func:`layerwise_pretrain` does not apply.

    >>> applies(nn.Linear(2, 2))
    'layer-wise pretraining needs an nn.Sequential'
    """
    if not isinstance(model, nn.Sequential):
        return "layer-wise pretraining needs an nn.Sequential"
    weights = [m for m in model if isinstance(m, WEIGHT_LAYERS)]
    if len(weights) < 3 or any(not isinstance(m, nn.Linear) for m in weights):
        return "layer-wise pretraining needs at least 3 Linear layers and no Conv"
    return None


#: The remedy this file declares.
REMEDIES: tuple[Remedy, ...] = (
    Remedy(
        "layerwise_pretrain",
        "layer-wise pretraining",
        "hidden layers pretrained one at a time as autoencoders on the output of the layers "
        "below, then fine-tuned",
        layerwise_pretrain,
        needs_batches=True,
        check=applies,
    ),
)
