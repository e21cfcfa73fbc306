"""One vocabulary: activation modules, activation names, autograd nodes, layer roles, and the
roles a watched model can be declared to play.

Every part of gradientflow that names an activation (the activation probe, the rules, the
remedies, the lab) uses the names defined here, so that what the probe records is what the
rules look for and what the remedies swap.

>>> from torch import nn
>>> activation_of_module(nn.SELU()), activation_of_module(nn.Linear(2, 2))
('selu', None)
>>> import torch
>>> x = torch.randn(4, requires_grad=True)
>>> activation_of_node(torch.selu(x).grad_fn), activation_of_node(torch.sigmoid(x).grad_fn)
('selu', 'sigmoid')
>>> activation_of_node(nn.functional.relu6(x).grad_fn), activation_of_node(x.exp().grad_fn)
('relu6', None)
>>> sorted(SATURATION_LIMITS)
['sigmoid', 'tanh']
"""

from __future__ import annotations

from typing import Any

from torch import nn

#: Element-wise activation modules, by the name used everywhere (probe, rules, remedies).
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "rrelu": nn.RReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "hardtanh": nn.Hardtanh,
    "relu6": nn.ReLU6,
    "hardsigmoid": nn.Hardsigmoid,
    "hardswish": nn.Hardswish,
    "logsigmoid": nn.LogSigmoid,
    "softsign": nn.Softsign,
    "tanhshrink": nn.Tanhshrink,
}

#: Autograd node name -> activation name. ``EluBackward0`` (ELU and SELU) and
#: ``HardtanhBackward0`` (Hardtanh and ReLU6) are told apart by :func:`activation_of_node`.
NODE_ACTIVATIONS: dict[str, str] = {
    "ReluBackward0": "relu",
    "ReluBackward1": "relu",
    "ThresholdBackward0": "relu",
    "SigmoidBackward0": "sigmoid",
    "TanhBackward0": "tanh",
    "LeakyReluBackward0": "leaky_relu",
    "LeakyReluBackward1": "leaky_relu",
    "RreluWithNoiseBackward0": "rrelu",
    "EluBackward0": "elu",
    "EluBackward1": "elu",
    "CeluBackward0": "celu",
    "CeluBackward1": "celu",
    "PreluKernelBackward0": "prelu",
    "PreluBackward0": "prelu",
    "GeluBackward0": "gelu",
    "SiluBackward0": "silu",
    "MishBackward0": "mish",
    "SoftplusBackward0": "softplus",
    "HardtanhBackward0": "hardtanh",
    "HardsigmoidBackward0": "hardsigmoid",
    "HardswishBackward0": "hardswish",
    "LogSigmoidBackward0": "logsigmoid",
}

#: Autograd nodes that pass an activation through unchanged in kind (reshapes, dropout, casts).
TRANSPARENT_NODES = frozenset(
    {
        "NativeDropoutBackward0",
        "ViewBackward0",
        "UnsafeViewBackward0",
        "ReshapeAliasBackward0",
        "CloneBackward0",
        "TransposeBackward0",
        "PermuteBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "UnsqueezeBackward0",
        "AliasBackward0",
        "ToCopyBackward0",
        "ExpandBackward0",
    }
)

#: Activations whose output is bounded, with the limits the saturation statistic measures
#: against (sigmoid' <= 1/4 and tanh' <= 1 vanish at the limits).
SATURATION_LIMITS: dict[str, tuple[float, float]] = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}

#: Activations whose units can output exactly 0 for every input (the dying-ReLU problem).
DEAD_CAPABLE = frozenset({"relu", "relu6"})

#: Activations whose slope is below 1 everywhere or almost everywhere (the article's cause).
SQUASHING = frozenset({"sigmoid", "tanh", "hardsigmoid", "logsigmoid", "softsign", "hardtanh"})

#: Weight layers: multiply their input by a matrix (the chain of local gradients runs here).
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

#: Layers that rescale activations rather than multiply them by a weight matrix (by class
#: name, as recorded in a Trace's ``LayerInfo.kind``).
NORM_KINDS = frozenset(
    {
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "LayerNorm",
        "GroupNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "LocalResponseNorm",
        "RMSNorm",
        "SyncBatchNorm",
    }
)

#: Layers whose input is looked up, not multiplied: not part of the chain of local gradients.
LOOKUP_KINDS = frozenset({"Embedding", "EmbeddingBag"})

#: Recurrent layers (gradient through time).
RECURRENT_LAYERS: tuple[type[nn.Module], ...] = (nn.RNN, nn.LSTM, nn.GRU)

#: The roles a watched model can be declared to play (``watch(model, opt, role=...)``, kept in
#: ``trace.meta["role"]``), for the rules that judge such a model differently. All four are a
#: player of an adversarial game (a GAN's discriminator or generator, a WGAN's critic, any
#: other player), whose loss is not expected to keep falling: it rises or settles as the other
#: player improves (a discriminator's at log 4, a non-saturating generator's at log 2).
RUN_ROLES: tuple[str, ...] = ("discriminator", "critic", "generator", "adversarial")

#: The declared roles whose loss is not expected to fall (the stagnation rule's exemption).
ADVERSARIAL_ROLES = frozenset(RUN_ROLES)

#: Layers whose statistics are laid out channel-first (N, C, ...).
CHANNEL_FIRST: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
)

_SELU_SCALE = 1.0507009873554805


def activation_of_module(module: nn.Module) -> str | None:
    """The activation name of ``module`` (exact class match), or None if it is none."""
    for name, cls in ACTIVATION_MODULES.items():
        if type(module) is cls:
            return name
    return None


def activation_of_node(node: Any) -> str | None:
    """The activation name of an autograd node (a tensor's ``grad_fn``), or None."""
    if node is None:
        return None
    kind = NODE_ACTIVATIONS.get(type(node).__name__)
    if kind == "elu" and abs(float(getattr(node, "_saved_scale", 1.0)) - _SELU_SCALE) < 1e-6:
        return "selu"
    if kind == "hardtanh":
        lo = float(getattr(node, "_saved_min_val", -1.0))
        hi = float(getattr(node, "_saved_max_val", 1.0))
        if lo == 0.0 and hi == 6.0:
            return "relu6"
    return kind


def is_transparent(node: Any) -> bool:
    """Whether an autograd node passes an activation through unchanged in kind."""
    return type(node).__name__ in TRANSPARENT_NODES
