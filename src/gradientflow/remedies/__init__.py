"""Remedies: model transforms that fix gradient flow, prescribed from evidence.

Each transform takes an ``nn.Module`` and returns a new one (the input is left alone), with the
companion changes that make it work (ReLU comes with He init, SELU with LeCun-normal init and
AlphaDropout), and raises a :class:`~gradientflow.errors.GradientFlowError` naming the module
when it cannot apply.

>>> import torch
>>> from gradientflow.remedies import swap_activation, add_batchnorm
>>> from gradientflow.demo import mlp
>>> model = mlp(depth=4, width=16)
>>> [type(m).__name__ for m in swap_activation(model, "relu")][:2]
['Linear', 'ReLU']
>>> sum(isinstance(m, torch.nn.BatchNorm1d) for m in add_batchnorm(model).modules())
3

* :func:`prescribe` ranks the remedies for a Diagnosis; :func:`gradientflow.trial.trial` trains
  the baseline and each remedy on the same batches and ranks them by measured outcome.
* :data:`REGISTRY` maps the names findings use ("swap_activation:relu", "add_batchnorm", ...)
  to :class:`Remedy` objects. Each transform's file declares its own ``REMEDIES`` (with the
  check that says whether it applies); :mod:`gradientflow.remedies.registry` collects them.
"""

from __future__ import annotations

from gradientflow.remedies.activation import swap_activation
from gradientflow.remedies.batchnorm import FeatureBatchNorm, add_batchnorm
from gradientflow.remedies.clipper import GradientClipper, clip_gradients
from gradientflow.remedies.hardware import FasterModel, faster_hardware
from gradientflow.remedies.prescribe import prescribe
from gradientflow.remedies.pretrain import layerwise_pretrain
from gradientflow.remedies.recurrent import LSTMAsRNN, to_gru, to_lstm
from gradientflow.remedies.registry import REGISTRY
from gradientflow.remedies.reinit import reinit
from gradientflow.remedies.remedy import Remedy
from gradientflow.remedies.residual import Residual, add_residual

__all__ = [
    "REGISTRY",
    "FasterModel",
    "FeatureBatchNorm",
    "GradientClipper",
    "LSTMAsRNN",
    "Remedy",
    "Residual",
    "add_batchnorm",
    "add_residual",
    "clip_gradients",
    "faster_hardware",
    "layerwise_pretrain",
    "prescribe",
    "reinit",
    "swap_activation",
    "to_gru",
    "to_lstm",
]
