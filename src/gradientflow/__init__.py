"""gradientflow: find, explain and fix vanishing and exploding gradients in any PyTorch model.

>>> import torch, gradientflow
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2))
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> with gradientflow.watch(model, opt) as mon:
...     for _ in range(3):
...         opt.zero_grad()
...         loss = model(torch.randn(16, 4)).pow(2).mean()
...         loss.backward()
...         mon.log(loss=loss)
...         opt.step()
>>> mon.trace.n_records, mon.trace.layer_names
(3, ['0', '2'])

The public names are few; each is imported on first use so that ``import gradientflow`` stays
light (plots, the lab and the integrations pull in their optional dependencies only when used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gradientflow.probes  # noqa: F401  declares the built-in Trace columns
from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.schedule import Schedule
from gradientflow.trace import Trace

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "watch": "gradientflow.monitor",
    "Monitor": "gradientflow.monitor",
    "diagnose": "gradientflow.diagnosis",
    "Diagnosis": "gradientflow.diagnosis.findings",
    "Finding": "gradientflow.diagnosis.findings",
    "prescribe": "gradientflow.remedies.prescribe",
    "Remedy": "gradientflow.remedies.remedy",
    "Recipe": "gradientflow.recipe",
    "trial": "gradientflow.trial",  # the package, callable as the function trial()
    "preflight": "gradientflow.preflight",  # the package, callable as the function
}

__all__ = ["GradientFlowError", "GradientFlowWarning", "Schedule", "Trace", "__version__", *_LAZY]

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis as Diagnosis
    from gradientflow.diagnosis.findings import Finding as Finding
    from gradientflow.monitor import Monitor as Monitor
    from gradientflow.monitor import watch as watch
    from gradientflow.recipe import Recipe as Recipe
    from gradientflow.remedies.prescribe import prescribe as prescribe
    from gradientflow.remedies.remedy import Remedy as Remedy
    from gradientflow.trial.trial import trial as trial


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gradientflow' has no attribute {name!r}")
    value = importlib.import_module(module)
    if module != f"gradientflow.{name}":  # a subpackage stands for itself (gradientflow.trial)
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
