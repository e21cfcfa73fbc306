"""Statistics as probes: each family of statistics is one :class:`Probe` in one file.

=====================  ===========================================================  ==========
probe                  columns                                                      file
=====================  ===========================================================  ==========
:class:`GradientProbe`  grad_norm, nonfinite; per step global_grad_norm             gradients
:class:`ClipProbe`      grad_norm_postclip (and pre-clip grad_norm when clipping ran) preclip
:class:`WeightProbe`    weight_norm, zero_frac, update_norm, rel_update             weights
:class:`ActivationProbe` in_dead_frac, in_sat_frac, out_grad_norm, out_rms          activations
:class:`RecurrentProbe` the ``bptt/<layer>/...`` extras (gradient through time)     recurrent
=====================  ===========================================================  ==========

The Trace schema is the union of the columns the probes declare: importing this package
declares the built-in ones (:data:`BUILTIN`) to :func:`gradientflow.trace.declare_columns`.
A new statistic is one file with a :class:`Probe` subclass and one line in :data:`BUILTIN`.

>>> sorted(WeightProbe.layer_columns)
['rel_update', 'update_norm', 'weight_norm', 'zero_frac']
>>> from gradientflow.trace import LAYER_METRICS
>>> set(LAYER_METRICS) >= set(ActivationProbe.layer_columns)
True
"""

from __future__ import annotations

from gradientflow.probes.activations import ActivationProbe
from gradientflow.probes.base import Probe
from gradientflow.probes.gradients import GradientProbe
from gradientflow.probes.layers import Watched
from gradientflow.probes.preclip import ClipProbe
from gradientflow.probes.recurrent import RecurrentProbe, recurrent_probes
from gradientflow.probes.weights import WeightProbe
from gradientflow.trace import declare_columns

#: The statistic families every monitor runs, in the order they measure.
BUILTIN: tuple[type[Probe], ...] = (
    GradientProbe,
    ClipProbe,
    WeightProbe,
    ActivationProbe,
)


def builtin_probes(zero_threshold: float = 1e-3, saturation_eps: float = 0.01) -> list[Probe]:
    """A fresh instance of each probe in :data:`BUILTIN`, as a monitor runs them.

    >>> [type(p).__name__ for p in builtin_probes()]
    ['GradientProbe', 'ClipProbe', 'WeightProbe', 'ActivationProbe']
    """
    settings: dict[type[Probe], tuple[float, ...]] = {
        WeightProbe: (zero_threshold,),
        ActivationProbe: (saturation_eps,),
    }
    return [probe(*settings.get(probe, ())) for probe in BUILTIN]


def declare(probe: type[Probe] | Probe) -> None:
    """Make the columns ``probe`` declares known to every Trace."""
    declare_columns(probe.layer_columns, probe.step_columns)


for _probe in BUILTIN:
    declare(_probe)

__all__ = [
    "BUILTIN",
    "ActivationProbe",
    "ClipProbe",
    "GradientProbe",
    "Probe",
    "RecurrentProbe",
    "Watched",
    "WeightProbe",
    "builtin_probes",
    "declare",
    "recurrent_probes",
]
