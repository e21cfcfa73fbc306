"""What a *layer* is, and in what order layers come.

A layer is a module that owns parameters directly (``recurse=False``): its weight and bias are
measured together. Layers are ordered by depth, i.e. by the order in which the forward pass
first calls them, not by registration order. A parameter shared by several modules (tied
weights) belongs to the first of them in depth order and counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.trace import LayerInfo


@dataclass
class Layer:
    """A layer and the parameters counted for it."""

    name: str
    module: nn.Module
    params: list[nn.Parameter] = field(default_factory=list)
    trainable: bool = True
    input_activation: str | None = None

    def info(self) -> LayerInfo:
        return LayerInfo(
            name=self.name,
            kind=type(self.module).__name__,
            n_params=sum(p.numel() for p in self.params),
            trainable=self.trainable,
            input_activation=self.input_activation,
        )


def candidate_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in registration order, each module once."""
    found = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            found.append((name or type(model).__name__, module))
    if not found:
        raise GradientFlowError(
            f"watch(): the model ({type(model).__name__}) has no parameters, so there is no "
            "gradient to follow"
        )
    return found


def build_layers(
    candidates: list[tuple[str, nn.Module]],
    first_use: dict[int, int],
    optimizer_params: set[int] | None,
) -> list[Layer]:
    """Order candidates by first use and give each parameter to exactly one layer.

    Modules never called in a forward pass keep their registration order, after the used ones.
    ``optimizer_params`` (ids) marks layers none of whose parameters the optimizer updates as
    not trainable.
    """
    never = len(candidates) + 10**6
    order = sorted(
        range(len(candidates)),
        key=lambda i: (first_use.get(id(candidates[i][1]), never), i),
    )
    seen: set[int] = set()
    layers: list[Layer] = []
    for i in order:
        name, module = candidates[i]
        params = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        if not params:
            continue  # every parameter is tied to an earlier layer
        seen.update(id(p) for p in params)
        layers.append(Layer(name, module, params, _trainable(params, optimizer_params)))
    return layers


def _trainable(params: Iterable[nn.Parameter], optimizer_params: set[int] | None) -> bool:
    return any(
        p.requires_grad and (optimizer_params is None or id(p) in optimizer_params) for p in params
    )


def optimizer_param_ids(optimizer: torch.optim.Optimizer | None) -> set[int] | None:
    if optimizer is None:
        return None
    return {id(p) for group in optimizer.param_groups for p in group["params"]}
