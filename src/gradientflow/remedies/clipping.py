"""``clip_gradients`` as a remedy: its registry entry (the mechanism is in
:mod:`gradientflow.remedies.clipper`)."""

from __future__ import annotations

from gradientflow.remedies.clipper import GradientClipper, clip_gradients
from gradientflow.remedies.remedy import Remedy

__all__ = ["REMEDIES", "GradientClipper", "clip_gradients"]

REMEDIES: tuple[Remedy, ...] = (
    Remedy(
        "clip_gradients",
        "clip grad norm 1",
        "gradient norm clipped to 1.0 before each optimizer step",
        None,
        clip=1.0,
    ),
)
