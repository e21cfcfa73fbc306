"""The one error class of gradientflow.

Every message names what is wrong: the layer, the step, the argument.
"""

from __future__ import annotations


class GradientFlowError(Exception):
    """Raised for bad input to gradientflow: a wrong argument, a model it cannot read.

    Problems *in the training itself* (NaN gradients, exploding norms) are never raised:
    they are recorded as data and reported as findings.

    >>> raise GradientFlowError("watch(): `model` must be an nn.Module, got int")
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: watch(): `model` must be an nn.Module, got int
    """


class GradientFlowWarning(UserWarning):
    """Warnings from gradientflow: an early critical finding (``watch(..., warn=True)``), or a
    measurement that had to stop. Filter them like any warning:

    >>> import warnings
    >>> warnings.simplefilter("ignore", GradientFlowWarning)
    """
