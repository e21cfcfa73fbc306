"""The lab's experiments, one a module, each tied to a claim of the article and a source.

Every module defines ``run(quick: bool = False, out_dir: Path | None = None) ->
ExperimentResult``. ``quick`` shrinks the budget (the whole quick lab runs in about a minute on
two cores) while still showing the effect; ``out_dir`` is where figures go (none if None).

>>> names()[:3]
['depth-sigmoid', 'glorot-init', 'batchnorm']
>>> load("mean-field").__name__
'run'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from gradientflow.errors import GradientFlowError
from gradientflow.lab.record import ExperimentResult

Experiment = Callable[..., ExperimentResult]

#: experiment name -> module under gradientflow.lab.experiments, in the order reports list them
EXPERIMENTS: dict[str, str] = {
    "depth-sigmoid": "depth_sigmoid",
    "glorot-init": "glorot_init",
    "batchnorm": "batchnorm",
    "residual": "residual",
    "selu-fixed-point": "selu_fixed_point",
    "dying-relu": "dying_relu",
    "pretraining": "pretraining",
    "lstm-vs-rnn": "lstm_vs_rnn",
    "mean-field": "mean_field",
    "trainability": "trainability",
    "mnist1d-baselines": "mnist1d_baselines",
    "hardware": "hardware",
    "qk-layernorm-lr": "qk_layernorm_lr",
    "post-ln-warmup": "post_ln_warmup",
    "z-loss": "z_loss",
}


def names() -> list[str]:
    """All experiment names, in report order."""
    return list(EXPERIMENTS)


def load(name: str) -> Experiment:
    """The ``run`` function of experiment ``name``."""
    if name not in EXPERIMENTS:
        raise GradientFlowError(
            f"lab: unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}"
        )
    module = importlib.import_module(f"gradientflow.lab.experiments.{EXPERIMENTS[name]}")
    run: Experiment = module.run
    return run


def describe(name: str) -> str:
    """The one-line claim of experiment ``name`` (its module's ``CLAIM``)."""
    load(name)
    module = importlib.import_module(f"gradientflow.lab.experiments.{EXPERIMENTS[name]}")
    return str(getattr(module, "CLAIM", ""))


def describe_safe(name: str) -> str:
    """Like :func:`describe`, but an empty string if the module cannot even be imported."""
    try:
        return describe(name)
    except Exception:
        return ""
