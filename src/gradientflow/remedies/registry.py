"""The registry: every remedy name a finding may list, mapped to its :class:`Remedy`.

Learning rates are for SGD with momentum 0.9, measured on the digits demo (20-layer width-64
MLP, batch 64, 20 epochs, 3 seeds): ReLU family with He init 0.005 (0.003 in SCIENCE.md's table
sits right at 90%), SELU with LeCun init 0.003, BatchNorm 0.01 (0.05 also reaches 90% but with
less margin), residual 0.05 (the baseline's), tanh with Xavier 0.01.

>>> sorted(REGISTRY)[:3]
['add_batchnorm', 'add_residual', 'clip_gradients']
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from gradientflow.remedies._modules import (
    WEIGHT_LAYERS,
    activation_kind,
    functional_activations,
)
from gradientflow.remedies.activation import COMPANION_INIT, swap_activation
from gradientflow.remedies.batchnorm import _feeds_activation, add_batchnorm
from gradientflow.remedies.pretrain import layerwise_pretrain
from gradientflow.remedies.recurrent import to_gru, to_lstm
from gradientflow.remedies.reinit import reinit
from gradientflow.remedies.remedy import Remedy
from gradientflow.remedies.residual import _block_end, add_residual

# ----------------------------------------------------------------------------- checks


def _leaves(model: nn.Module) -> list[nn.Module]:
    return [m for n, m in model.named_modules() if n and not list(m.children())]


def _check_swap(target: str, model: nn.Module) -> str | None:
    kinds = {activation_kind(m) for m in _leaves(model)} - {None}
    if not kinds:
        return "the model has no activation module"
    if kinds == {target}:
        return f"every activation is {target} already"
    calls = functional_activations(model)
    if calls:
        return f"activations are called as functions in forward: {calls[0]}"
    return None


def _check_batchnorm(model: nn.Module) -> str | None:
    items = _leaves(model)
    ok = any(
        isinstance(m, WEIGHT_LAYERS) and _feeds_activation(items, i) for i, m in enumerate(items)
    )
    return None if ok else "no Linear/Conv feeds an activation without a norm in between"


def _check_residual(model: nn.Module) -> str | None:
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            items = list(seq)
            if any(_block_end(items, i) is not None for i in range(len(items))):
                return None
    return "no shape-preserving Linear/Conv + activation block inside an nn.Sequential"


def _check_rnn(model: nn.Module) -> str | None:
    has = any(isinstance(m, nn.RNN) for m in model.modules())
    return None if has else "the model has no vanilla nn.RNN layer"


def _check_weights(model: nn.Module) -> str | None:
    has = any(isinstance(m, (*WEIGHT_LAYERS, nn.RNNBase)) for m in model.modules())
    return None if has else "the model has no Linear, Conv or RNN layer"


def _check_pretrain(model: nn.Module) -> str | None:
    if not isinstance(model, nn.Sequential):
        return "layer-wise pretraining needs an nn.Sequential"
    weights = [m for m in model if isinstance(m, WEIGHT_LAYERS)]
    if len(weights) < 3 or any(not isinstance(m, nn.Linear) for m in weights):
        return "layer-wise pretraining needs at least 3 Linear layers and no Conv"
    return None


def _check_hardware(model: nn.Module) -> str | None:
    from gradientflow.remedies.hardware import best_device

    device, _ = best_device()
    return "no CUDA or MPS device here: the CPU is already the fastest" if device == "cpu" else None


# ----------------------------------------------------------------------------- the remedies

_TITLES = {
    "relu": "ReLU + He init",
    "leaky_relu": "LeakyReLU + He init",
    "prelu": "PReLU + He init",
    "elu": "ELU + He init",
    "selu": "SELU + LeCun init",
    "gelu": "GELU + He init",
    "tanh": "tanh + Xavier init",
}
_SWAP_LR = {"selu": 0.003, "tanh": 0.01}


def _swap(target: str) -> Remedy:
    init = {"he": "He", "lecun": "LeCun-normal", "xavier": "Xavier"}[COMPANION_INIT[target]]
    extra = ", Dropout -> AlphaDropout" if target == "selu" else ""
    check: Callable[[nn.Module], str | None] = partial(_check_swap, target)
    return Remedy(
        name=f"swap_activation:{target}",
        title=_TITLES[target],
        changes=f"every activation becomes {target}; adjacent layers get {init} init{extra}",
        transform=partial(swap_activation, name=target),
        lr=_SWAP_LR.get(target, 0.005),
        check=check,
    )


def _reinit(scheme: str) -> Remedy:
    label = {"he": "He", "xavier": "Xavier", "lecun": "LeCun", "orthogonal": "orthogonal"}[scheme]
    return Remedy(
        name=f"reinit:{scheme}",
        title=f"{label} init",
        changes=f"Linear/Conv/RNN weights re-drawn with {label} init, biases 0",
        transform=partial(reinit, scheme=scheme),
        check=_check_weights,
    )


def _build() -> dict[str, Remedy]:
    remedies = [_swap(a) for a in ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "tanh")]
    remedies += [
        Remedy(
            "add_batchnorm",
            "BatchNorm",
            "a BatchNorm after each Linear/Conv that feeds an activation",
            add_batchnorm,
            lr=0.01,
            check=_check_batchnorm,
        ),
        Remedy(
            "add_residual",
            "residual skips",
            "identity skips x + f(x) around shape-preserving Linear/Conv + activation blocks",
            add_residual,
            check=_check_residual,
        ),
        Remedy(
            "to_lstm",
            "LSTM",
            "every nn.RNN becomes an LSTM of the same sizes (forget-gate "
            "bias 1), RNN interface kept",
            to_lstm,
            check=_check_rnn,
        ),
        Remedy(
            "to_gru",
            "GRU",
            "every nn.RNN becomes a GRU of the same sizes",
            to_gru,
            check=_check_rnn,
        ),
    ]
    remedies += [_reinit(s) for s in ("he", "xavier", "lecun", "orthogonal")]
    remedies += [
        Remedy(
            "clip_gradients",
            "clip grad norm 1",
            "gradient norm clipped to 1.0 before each optimizer step",
            None,
            clip=1.0,
        ),
        Remedy(
            "layerwise_pretrain",
            "layer-wise pretraining",
            "hidden layers pretrained one at "
            "a time as autoencoders on the output of the layers below, then fine-tuned",
            layerwise_pretrain,
            needs_batches=True,
            check=_check_pretrain,
        ),
        Remedy(
            "faster_hardware",
            "faster hardware",
            "runs on the fastest device (CUDA/MPS), bf16 autocast where supported",
            _hardware,
            check=_check_hardware,
        ),
        Remedy(
            "lower_lr", "learning rate / 10", "the learning rate divided by 10", None, lr_factor=0.1
        ),
        Remedy(
            "raise_lr",
            "learning rate x 3",
            "the learning rate multiplied by 3",
            None,
            lr_factor=3.0,
        ),
    ]
    remedies += _transformer_remedies()
    return {r.name: r for r in remedies}


def _transformer_remedies() -> list[Remedy]:
    from gradientflow.remedies import pre_ln, qk_layernorm, warmup, z_loss

    return [qk_layernorm.REMEDY, z_loss.REMEDY, warmup.REMEDY, pre_ln.REMEDY]


def _hardware(model: nn.Module) -> nn.Module:
    from gradientflow.remedies.hardware import faster_hardware

    return faster_hardware(model, verbose=False)


#: name -> Remedy, for every name a Finding's ``remedies`` list may hold.
REGISTRY: dict[str, Remedy] = _build()


def get(name: str) -> Remedy:
    """The registered remedy called ``name`` (a GradientFlowError lists the known ones)."""
    from gradientflow.errors import GradientFlowError

    try:
        return REGISTRY[name]
    except KeyError:
        raise GradientFlowError(
            f"unknown remedy {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
