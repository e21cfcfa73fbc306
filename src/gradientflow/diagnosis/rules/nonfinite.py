"""Rule ``nonfinite``: NaN or Inf in the gradients, the loss or the weights.

A number overflowed (an exploding gradient, a too-large learning rate, a log of 0). Once a NaN
reaches the weights every later step is NaN too, so the first step and layer where it appeared
is the evidence that matters. Steps that a ``GradScaler`` skipped because of inf gradients are
normal in mixed precision when rare; they are reported as info.

In a Trace, NaN also means "not measured", so a NaN counts as non-finite only where it cannot
mean that: the ``nonfinite`` count is positive, a norm is infinite, or a quantity that was
measured as finite before turns NaN.

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> g = [[1.0, 1.0], [1.0, 1.0], [np.inf, np.nan]]
>>> t = Trace.build(["fc0", "fc1"], steps=range(3), grad_norm=g, global_grad_norm=[1, 1, np.nan])
>>> f = rule(t)[0]
>>> f.severity, f.evidence["first_step"], f.layers
('critical', 2, ['fc0', 'fc1'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.trace import Trace

#: Remedies for this rule's findings, best first (prescribe's fallback for a finding of this
#: kind that names none).
REMEDIES: dict[str, list[str]] = {"nonfinite": ["lower_lr", "clip_gradients", "add_batchnorm"]}

#: Fraction of steps a GradScaler may skip before it is worth a warning (dynamic loss scaling
#: halves the scale on each overflow, so a healthy run skips a handful of steps at most).
SKIPPED_WARNING = 0.05


def _turned_nan(col: np.ndarray, bad: np.ndarray | None = None) -> np.ndarray:
    """True where a column is NaN after having held a finite value earlier (not "unmeasured"),
    or after a row where it was shown non-finite (``bad``: a positive NaN/Inf count)."""
    known = np.isfinite(col) if bad is None else np.isfinite(col) | bad
    seen = np.maximum.accumulate(known.astype(np.int8)) > 0
    before = np.concatenate([[False], seen[:-1]])
    return np.isnan(col) & before


def _bad_columns(arr: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(rows, layers) mask: infinite, or NaN on a measured row after a finite measured value."""
    mask = np.isinf(arr)
    rows = np.flatnonzero(measured)
    for j in range(arr.shape[1]):
        mask[rows, j] |= _turned_nan(arr[rows, j])
    return mask


def _masks(trace: Trace) -> dict[str, np.ndarray]:
    """Per row: bad gradients (with the layers), bad weights, bad loss."""
    m, every = trace.metrics, np.ones(trace.n_records, dtype=bool)
    glob = trace.scalars["global_grad_norm"]
    # a NaN global norm is a measured NaN after a finite one, or after a row whose gradients
    # were counted non-finite (a run NaN from its first step: every row after it too)
    counted = (np.nan_to_num(m["nonfinite"]) > 0).any(axis=1) | np.isinf(glob)
    glob_bad = np.isinf(glob) | _turned_nan(glob, counted)
    # a layer's gradient norm turning NaN counts only when the global norm says so too
    # (a parameter whose .grad is None at one step is "not measured", not NaN)
    grad_nan = _bad_columns(m["grad_norm"], every) & (glob_bad | np.isnan(glob))[:, None]
    layer_grad = (np.nan_to_num(m["nonfinite"]) > 0) | np.isinf(m["grad_norm"]) | grad_nan
    grad_row = layer_grad.any(axis=1) | glob_bad
    full = trace.scalars["full"] == 1.0
    weight_row = _bad_columns(m["weight_norm"], full if full.any() else every).any(axis=1)
    loss = trace.scalars["loss"]
    loss_row = np.isinf(loss) | (_turned_nan(loss) & (grad_row | weight_row))
    return {"layer_grad": layer_grad, "grad": grad_row, "weight": weight_row, "loss": loss_row}


def first_bad_row(trace: Trace) -> int | None:
    """The first record with a non-finite gradient, loss or weight (None when there is none)."""
    if trace.n_records == 0:
        return None
    mk = _masks(trace)
    idx = np.flatnonzero(mk["grad"] | mk["weight"] | mk["loss"])
    return int(idx[0]) if idx.size else None


def _first(trace: Trace, mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(trace.steps[idx[0]]) if idx.size else None


def rule(trace: Trace) -> list[Finding]:
    """Report the first NaN/Inf in gradients, loss or weights, and whether it persisted."""
    if trace.n_records == 0:
        return []
    mk = _masks(trace)
    any_row = mk["grad"] | mk["weight"] | mk["loss"]
    if not any_row.any():
        return []
    first_row = int(np.flatnonzero(any_row)[0])
    bad_layers = np.flatnonzero(mk["layer_grad"][first_row])
    trainable = trace.trainable
    blamed = [trace.layers[j].name for j in bad_layers if trainable[j]]
    skipped = trace.scalars["skipped"] == 1.0
    only_skipped = bool(np.all(skipped[any_row])) and not (mk["weight"] | mk["loss"]).any()
    ev: dict[str, Any] = {
        "first_step": int(trace.steps[first_row]),
        "first_layers": blamed,
        "first_gradient_step": _first(trace, mk["grad"]),
        "first_loss_step": _first(trace, mk["loss"]),
        "first_weight_step": _first(trace, mk["weight"]),
        "bad_steps": int(any_row.sum()),
        "recorded_steps": trace.n_records,
        "persists": bool(any_row[-1]),
        "skipped_steps": int(skipped.sum()),
    }
    if only_skipped:
        frac = skipped.sum() / trace.n_records
        severity: Severity = "warning" if frac > SKIPPED_WARNING else "info"
        msg = (
            f"The gradient scaler skipped {int(skipped.sum())} of {trace.n_records} steps "
            f"because the gradients held Inf/NaN (first at step {ev['first_step']}). "
            "Mixed precision does this when the loss scale is too high; a few are normal."
        )
        return [Finding("nonfinite", severity, blamed, ev, msg, ["clip_gradients", "lower_lr"])]
    # from the very first record: the run never computed a finite step
    from_start = first_row == 0
    ev["from_start"] = from_start
    critical = ev["persists"] or ev["first_weight_step"] is not None or from_start
    severity = "critical" if critical else "warning"
    remedies = list(REMEDIES["nonfinite"])
    return [Finding("nonfinite", severity, blamed, ev, _message(ev, blamed), remedies)]


def _message(ev: dict[str, Any], blamed: list[str]) -> str:
    if len(blamed) > 1:
        where = f"in {len(blamed)} layers at once"
    else:
        where = f"in layer '{blamed[0]}'" if blamed else "in the loss"
    if ev.get("from_start") and ev["first_step"] == 0:  # no update has happened yet
        parts = [
            f"NaN/Inf values appeared at the first step, {where}, before any update could "
            "cause them: the forward pass makes them (NaN or Inf in the inputs, a loss that "
            "takes the log of 0 or divides by 0, or non-finite initial weights)."
        ]
    else:
        parts = [
            f"NaN/Inf values appeared at step {ev['first_step']}, {where}: a number "
            "overflowed, usually because the updates are too large (learning rate) or the "
            "gradients exploded."
        ]
    if ev["first_weight_step"] is not None:
        parts.append(
            f"The weights themselves became NaN/Inf at step {ev['first_weight_step']}; "
            "from then on every step computes NaN and training is over."
        )
    elif ev["persists"]:
        parts.append("It never recovered: every step since is NaN/Inf.")
    else:
        parts.append(f"It happened on {ev['bad_steps']} of {ev['recorded_steps']} recorded steps.")
    return " ".join(parts)
