"""Learning-rate remedies: no change to the model, another learning rate to train it with.

A learning rate too large makes the weights overshoot (spikes, NaN); one too small makes every
layer's relative update tiny (stagnation). ``Remedy.learning_rate`` applies the factor to the
user's learning rate, whatever the optimizer.

>>> [(r.name, r.learning_rate(0.1, "Adam")) for r in REMEDIES]
[('lower_lr', 0.010000000000000002), ('raise_lr', 0.30000000000000004)]
"""

from __future__ import annotations

from gradientflow.remedies.remedy import Remedy

#: The remedies this file declares.
REMEDIES: tuple[Remedy, ...] = (
    Remedy("lower_lr", "learning rate / 10", "the learning rate divided by 10", lr_factor=0.1),
    Remedy("raise_lr", "learning rate x 3", "the learning rate multiplied by 3", lr_factor=3.0),
)
