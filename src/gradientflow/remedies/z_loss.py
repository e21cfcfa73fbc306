"""``z_loss``: the auxiliary loss 1e-4 · log² Z on the output logits (Chowdhery et al. 2022).

Design. A remedy is a model transform and the trial keeps the user's loss function, so the
z-loss travels with the model: :class:`ZLossModel` wraps the model and passes its output
logits (a tensor, or the ``.logits`` of an output object) through an identity autograd function
whose backward *adds* the gradient of ``coef · mean(log² Z)`` (mean over positions; log Z =
logsumexp over the last dim): ∂/∂z = coef · 2 log Z · softmax(z) / N. The forward values, and so
the loss the user computes and logs, are unchanged; the gradient is exactly that of
``loss + coef · mean(log² Z)`` for a loss that averages over positions (with a summed loss,
scale ``coef`` by the number of positions). ``last_z_loss`` holds the latest penalty value.
Users who prefer it explicit wrap their loss instead: :func:`z_loss_term`.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> head = torch.nn.Linear(4, 10)
>>> x, y = torch.randn(8, 4), torch.randint(0, 10, (8,))
>>> ce = torch.nn.functional.cross_entropy
>>> model = z_loss(head, coef=0.1)
>>> ce(model(x), y).backward()
>>> ref = torch.nn.Linear(4, 10); ref.load_state_dict(head.state_dict())
<All keys matched successfully>
>>> out = ref(x); (ce(out, y) + z_loss_term(out, 0.1)).backward()
>>> bool(torch.allclose(model.model.weight.grad, ref.weight.grad, atol=1e-6))
True
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.remedy import Remedy

COEF = 1e-4


def z_loss_term(logits: Tensor, coef: float = COEF) -> Tensor:
    """``coef · mean over positions of logsumexp(logits, -1)²``."""
    return coef * torch.logsumexp(logits.float(), -1).pow(2).mean()


class _AddZGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, coef: float) -> Tensor:
        ctx.save_for_backward(logits)
        ctx.coef = coef
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (logits,) = ctx.saved_tensors
        z = logits.detach().float()
        log_z = torch.logsumexp(z, -1, keepdim=True)
        n = max(1, z.numel() // z.shape[-1])
        extra = ctx.coef * 2.0 * log_z * torch.softmax(z, -1) / n
        return grad + extra.to(grad.dtype), None


class ZLossModel(nn.Module):
    """``model`` whose output logits carry the z-loss gradient (see the module docstring)."""

    def __init__(self, model: nn.Module, coef: float = COEF) -> None:
        super().__init__()
        self.model, self.coef = model, float(coef)
        self.last_z_loss: Tensor | None = None

    def _wrap(self, logits: Tensor) -> Tensor:
        if not (isinstance(logits, Tensor) and logits.is_floating_point()):
            raise GradientFlowError(
                f"z_loss: the model's output must be a float tensor of logits (or have .logits), "
                f"got {type(logits).__name__}"
            )
        self.last_z_loss = z_loss_term(logits.detach(), self.coef)
        if not torch.is_grad_enabled() or not logits.requires_grad:
            return logits
        out: Tensor = _AddZGrad.apply(logits, self.coef)
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model(*args, **kwargs)
        if isinstance(out, Tensor):
            return self._wrap(out)
        if isinstance(getattr(out, "logits", None), Tensor):
            out.logits = self._wrap(out.logits)
            return out
        return self._wrap(out)


def z_loss(model: nn.Module, coef: float = COEF) -> nn.Module:
    """A copy of ``model`` trained with the extra z-loss gradient ``coef · log² Z``."""
    if not coef > 0:
        raise GradientFlowError(f"z_loss: coef must be > 0, got {coef}")
    return ZLossModel(copy.deepcopy(model), coef)


REMEDY = Remedy(
    "z_loss",
    "z-loss 1e-4",
    "auxiliary loss 1e-4 · log² Z on the output logits (added to the gradient; the loss you "
    "log is unchanged)",
    z_loss,
)

REMEDIES = [REMEDY]
