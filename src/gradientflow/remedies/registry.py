"""The registry: every remedy name a finding may list, mapped to its :class:`Remedy`.

Each remedy file declares its own ``REMEDIES`` (the :class:`Remedy` objects, with their
applicability checks and suggested learning rates); this module only collects them. Adding a
remedy is one file (a transform and its ``REMEDIES``) and one line in :data:`SOURCES`. The order
of the sources is the registry's order, which breaks ties when remedies are ranked.

>>> sorted(REGISTRY)[:3]
['add_batchnorm', 'add_residual', 'clip_gradients']
>>> get("reinit:he").title
'He init'
"""

from __future__ import annotations

from types import ModuleType

from gradientflow.errors import GradientFlowError
from gradientflow.remedies import (
    activation,
    batchnorm,
    clipping,
    hardware,
    learning_rate,
    lsuv,
    pre_ln,
    pretrain,
    qk_layernorm,
    recurrent,
    reinit,
    residual,
    warmup,
    z_loss,
)
from gradientflow.remedies.remedy import Remedy

#: The files whose ``REMEDIES`` are registered, in ranking order for ties.
SOURCES: tuple[ModuleType, ...] = (
    activation,  # swap_activation:relu, :leaky_relu, :prelu, :elu, :selu, :gelu, :tanh
    batchnorm,  # add_batchnorm
    residual,  # add_residual
    recurrent,  # to_lstm, to_gru
    reinit,  # reinit:he, :xavier, :lecun, :orthogonal
    lsuv,  # reinit:lsuv
    clipping,  # clip_gradients
    pretrain,  # layerwise_pretrain
    hardware,  # faster_hardware
    learning_rate,  # lower_lr, raise_lr
    qk_layernorm,  # qk_layernorm
    z_loss,  # z_loss
    warmup,  # warmup
    pre_ln,  # to_pre_ln
)


def _collect(sources: tuple[ModuleType, ...]) -> dict[str, Remedy]:
    out: dict[str, Remedy] = {}
    for module in sources:
        for remedy in module.REMEDIES:
            if remedy.name in out:
                raise GradientFlowError(
                    f"remedy {remedy.name!r} is declared twice (again in {module.__name__})"
                )
            out[remedy.name] = remedy
    return out


#: name -> Remedy, for every name a Finding's ``remedies`` list may hold.
REGISTRY: dict[str, Remedy] = _collect(SOURCES)


def get(name: str) -> Remedy:
    """The registered remedy called ``name`` (a GradientFlowError lists the known ones)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise GradientFlowError(
            f"unknown remedy {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
