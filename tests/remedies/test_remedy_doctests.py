"""The examples in the remedies' docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "gradientflow.remedies.activation",
    "gradientflow.remedies.batchnorm",
    "gradientflow.remedies.clipper",
    "gradientflow.remedies.clipping",
    "gradientflow.remedies.hardware",
    "gradientflow.remedies.learning_rate",
    "gradientflow.remedies.prescribe",
    "gradientflow.remedies.pretrain",
    "gradientflow.remedies.recurrent",
    "gradientflow.remedies.registry",
    "gradientflow.remedies.reinit",
    "gradientflow.remedies.remedy",
    "gradientflow.remedies.residual",
    "gradientflow.trial.table",
    "gradientflow.trial.run",
    "gradientflow.trial.trial",
    "gradientflow.remedies.modules",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_package_docstring() -> None:
    import gradientflow.remedies as remedies

    assert doctest.testmod(remedies).failed == 0
