"""Rule ``post_ln_depth``: in a post-LN transformer the gradient grows toward the output.

Xiong et al. (2020, "On layer normalization in the transformer architecture", Thm. 1 and
Fig. 3) show that at initialisation the gradient of the FFN weights of a post-LN stack (LayerNorm
after each residual add, the original Transformer and BERT) is largest in the last blocks,
while a pre-LN stack's is flat or falls toward the output; a large learning rate then breaks
the top blocks first, which is why post-LN needs a learning-rate warmup, and pre-LN trains
without one. The rule reads which blocks are post-LN from the attention probe
(``attn/<layer>/block``, ``attn/<layer>/post_ln``) and each block's last FFN weight layer
(``<block>.linear2``, or the last Linear of the block outside its attention) from the Trace.

Criterion (a pattern of risk, so a warning, never critical): at least **4** post-LN blocks;
over the first **5** recorded steps (median in log space), the last block's gradient norm is at
least **1.5x** the median block's and it rises over the last three blocks. In our 12-block
post-LN LMs at init the ratio is 1.2-3.2 (median 2.5); pre-LN twins give 0.7-1.0 (lab
``post-ln-warmup``).

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> names = [f"enc.{i}.{p}" for i in range(4) for p in ("self_attn", "linear1", "linear2")]
>>> g = [[1.0] * 12]
>>> for i, v in enumerate([0.2, 0.2, 0.3, 0.5]): g[0][3 * i + 2] = v
>>> ex = {f"attn/enc.{i}.self_attn/{k}": np.array([v]) for i in range(4)
...       for k, v in (("block", f"enc.{i}"), ("post_ln", 1.0))}
>>> [f] = rule(Trace.build(names, steps=[0], grad_norm=g, extras=ex))
>>> f.kind, f.remedies, round(f.evidence["growth"], 2)
('post_ln_depth', ['warmup', 'to_pre_ln'], 2.0)
"""

from __future__ import annotations

import numpy as np

from gradientflow.diagnosis.findings import Finding
from gradientflow.diagnosis.rules._common import fmt
from gradientflow.trace import Trace

MIN_BLOCKS = 4
EARLY_ROWS = 5
MIN_GROWTH = 1.5
REMEDIES: dict[str, list[str]] = {"post_ln_depth": ["warmup", "to_pre_ln"]}


def _post_ln_blocks(trace: Trace) -> list[tuple[str, str]]:
    """(block, attention layer) of every post-LN block the probe saw, in depth order."""
    out = []
    for key, value in trace.extras.items():
        if key.startswith("attn/") and key.endswith("/post_ln") and float(value[0]) == 1.0:
            layer = key[5:-8]
            block = str(trace.extras.get(f"attn/{layer}/block", np.array([""]))[0])
            if block:
                out.append((block, layer))
    order = {info.name: j for j, info in enumerate(trace.layers)}
    return sorted(out, key=lambda b: order.get(b[1], len(order)))


def _ffn_layer(trace: Trace, block: str, attention: str) -> int | None:
    found = None
    for j, info in enumerate(trace.layers):
        name = info.name
        inside = name.startswith(block + ".") and not name.startswith(attention)
        if inside and info.trainable and info.kind in ("Linear", "Conv1D"):
            found = j if "attention" not in name else found
    return found


def rule(trace: Trace) -> list[Finding]:
    """One warning when post-LN blocks show gradients growing toward the output at the start."""
    blocks = _post_ln_blocks(trace)
    layers = [(b, _ffn_layer(trace, b, a)) for b, a in blocks]
    cols = [(b, j) for b, j in layers if j is not None]
    if len(cols) < MIN_BLOCKS or not trace.n_records:
        return []
    g = trace.metrics["grad_norm"][:EARLY_ROWS, [j for _, j in cols]]
    with np.errstate(divide="ignore", invalid="ignore"):
        prof = np.exp(np.nanmedian(np.log(g), axis=0))
    if not np.isfinite(prof).all() or (prof <= 0).any():
        return []
    growth = float(prof[-1] / np.median(prof))
    rising = bool(prof[-1] > prof[-2] > prof[-3])
    if growth < MIN_GROWTH or not rising:
        return []
    names = [trace.layers[j].name for _, j in cols]
    message = (
        f"Post-LN transformer: at the start of training the FFN gradient grows toward the "
        f"output ({len(cols)} post-LN blocks; the last block's {fmt(prof[-1])} is "
        f"{fmt(growth)}x the median block's). With LayerNorm after each residual add the top "
        "blocks get the largest gradients at initialisation, so a large learning rate breaks "
        "them first (Xiong et al. 2020). Use a learning-rate warmup, or move the LayerNorms "
        "before each sub-layer (pre-LN), which trains without one."
    )
    evidence = {
        "blocks": [b for b, _ in cols],
        "ffn_layers": names,
        "ffn_grad_norm": [float(v) for v in prof],
        "growth": growth,
        "rows": int(min(EARLY_ROWS, trace.n_records)),
    }
    return [
        Finding(
            "post_ln_depth",
            "warning",
            [names[-1]],
            evidence,
            message,
            list(REMEDIES["post_ln_depth"]),
        )
    ]
