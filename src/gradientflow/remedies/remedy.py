"""``Remedy``: one way out, with what it changes, why it was chosen, and how to train it.

A remedy is more than a transform: "the activation *and* its init *and* a learning rate that
suits it" (SCIENCE.md). So a :class:`Remedy` carries the transform (``apply``), a suggested
learning rate for SGD with momentum 0.9 (measured on the digits demo), a factor for other
optimizers, an optional gradient clip, and — once :func:`~gradientflow.remedies.prescribe`
chose it — the evidence (``why``).

>>> from gradientflow.remedies import REGISTRY
>>> r = REGISTRY["swap_activation:relu"]
>>> r.title, r.learning_rate(0.05, "SGD")
('ReLU + He init', 0.005)
>>> r.learning_rate(1e-3, "Adam")
0.001
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError

if TYPE_CHECKING:
    from gradientflow.remedies.clipper import GradientClipper


@dataclass
class Remedy:
    """A named remedy: transform, companion settings, and the evidence that points to it.

    * ``name``: the registry name findings use (``"swap_activation:relu"``, ``"to_lstm"``...).
    * ``title``: a short label for tables; ``changes``: what ``apply`` does to the model.
    * ``transform(model)`` (or ``transform(model, batches)`` when ``needs_batches``).
    * ``lr``: suggested learning rate for SGD (momentum 0.9); None keeps the user's.
    * ``lr_factor``: multiplies the user's learning rate (used for other optimizers, and by
      ``lower_lr`` / ``raise_lr`` everywhere).
    * ``clip``: clip the gradient norm to this value while training (``clip_gradients``).
    * ``check(model)``: None when the remedy applies to ``model``, else the reason it does not.
    * ``why`` and ``findings``: filled by ``prescribe`` — the evidence, and the finding kinds.
    """

    name: str
    title: str
    changes: str
    transform: Callable[..., nn.Module] | None = None
    lr: float | None = None
    lr_factor: float = 1.0
    clip: float | None = None
    needs_batches: bool = False
    check: Callable[[nn.Module], str | None] | None = None
    why: str = ""
    findings: list[str] = field(default_factory=list)
    score: float = 0.0

    def applicable(self, model: nn.Module) -> str | None:
        """None if the remedy can be applied to ``model``, else the reason it cannot."""
        return None if self.check is None else self.check(model)

    def apply(self, model: nn.Module, batches: Iterable[Any] | None = None) -> nn.Module:
        """The remedied model: a new module; ``model`` is left as it was.

        >>> from torch import nn
        >>> from gradientflow.remedies import REGISTRY
        >>> m = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
        >>> type(REGISTRY["swap_activation:elu"].apply(m)[1]).__name__
        'ELU'
        """
        import copy

        if self.transform is None:
            return copy.deepcopy(model)
        if self.needs_batches:
            if batches is None:
                raise GradientFlowError(
                    f"remedy {self.name!r} needs training batches: remedy.apply(model, batches=...)"
                )
            return self.transform(model, batches)
        return self.transform(model)

    def learning_rate(self, base_lr: float, optimizer: str = "SGD") -> float:
        """The learning rate to train the remedied model with.

        ``base_lr`` is the user's; ``optimizer`` the optimizer class name. The suggested ``lr``
        was measured with SGD and momentum, so it is used for SGD only.
        """
        if self.lr is not None and optimizer == "SGD":
            return self.lr
        return base_lr * self.lr_factor

    def prepare(self, optimizer: torch.optim.Optimizer) -> GradientClipper | None:
        """Companion changes to the training loop (gradient clipping); call before training."""
        from gradientflow.remedies.clipper import GradientClipper

        if self.clip is None:
            return None
        return GradientClipper(self.clip).attach(optimizer)

    def with_evidence(self, why: str, findings: list[str], score: float) -> Remedy:
        """A copy carrying the evidence that pointed to it."""
        return dataclasses.replace(self, why=why, findings=list(findings), score=score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "changes": self.changes,
            "why": self.why,
            "findings": list(self.findings),
            "suggested_sgd_lr": self.lr,
            "lr_factor": self.lr_factor,
            "clip": self.clip,
        }

    def __str__(self) -> str:
        lr = f" (SGD lr {self.lr:g})" if self.lr is not None else ""
        return f"{self.name}: {self.title} — {self.changes}{lr}"
