"""``to_pre_ln``: post-LN transformer layers become pre-LN, weights kept (Xiong et al. 2020).

Every ``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer`` with ``norm_first=False``
gets ``norm_first=True``: the same LayerNorms (weights copied) now normalise each sub-layer's
input instead of the residual sum, so the residual path is an identity and the gradient no
longer grows toward the output. A pre-LN stack needs a LayerNorm at its end: an
``nn.TransformerEncoder``/``Decoder`` without a final ``norm`` gets a fresh
``LayerNorm(d_model)`` (weight 1, bias 0). The input model is left alone.

>>> from torch import nn
>>> layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
>>> enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
>>> new = to_pre_ln(enc)
>>> [l.norm_first for l in new.layers], type(new.norm).__name__, enc.layers[0].norm_first
([True, True], 'LayerNorm', False)
"""

from __future__ import annotations

import copy

from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.remedy import Remedy

_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_STACKS = (nn.TransformerEncoder, nn.TransformerDecoder)


def _check(model: nn.Module) -> str | None:
    post = [m for m in model.modules() if isinstance(m, _LAYERS) and not m.norm_first]
    return None if post else "the model has no post-LN nn.TransformerEncoderLayer/DecoderLayer"


def to_pre_ln(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose post-LN transformer layers are pre-LN (see module docstring)."""
    reason = _check(model)
    if reason is not None:
        raise GradientFlowError(f"to_pre_ln: {reason}")
    new = copy.deepcopy(model)
    for module in new.modules():
        if isinstance(module, _STACKS) and module.norm is None and len(module.layers):
            first = module.layers[0]
            if isinstance(first, _LAYERS) and not first.norm_first:
                ref = first.norm1
                module.norm = nn.LayerNorm(
                    ref.normalized_shape, eps=ref.eps, device=ref.weight.device
                )
    for module in new.modules():
        if isinstance(module, _LAYERS):
            module.norm_first = True
    return new


REMEDY = Remedy(
    "to_pre_ln",
    "pre-LN",
    "post-LN transformer layers become pre-LN (norm_first=True, weights kept, a final "
    "LayerNorm added to the stack)",
    to_pre_ln,
    check=_check,
)

REMEDIES = [REMEDY]
