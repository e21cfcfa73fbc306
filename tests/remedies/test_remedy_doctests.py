"""The examples in the remedies' docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "activation",
    "batchnorm",
    "cli",
    "clipping",
    "hardware",
    "prescribe",
    "pretrain",
    "recurrent",
    "registry",
    "reinit",
    "remedy",
    "residual",
    "table",
    "training",
    "trial",
    "_modules",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"gradientflow.remedies.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_package_docstring() -> None:
    import gradientflow.remedies as remedies

    assert doctest.testmod(remedies).failed == 0
