"""One first/last ratio, one bptt key parser, one activation vocabulary (rules and remedies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradientflow.diagnosis.depth import chain_layers, first_over_last, grad_ratio
from gradientflow.diagnosis.horizon import bptt_key, bptt_layers, horizon_stats, parse_bptt_key
from gradientflow.diagnosis.rules import dead_units, default_remedies, exploding, vanishing
from gradientflow.errors import GradientFlowError
from gradientflow.remedies import REGISTRY, prescribe
from gradientflow.remedies.activation import applies
from gradientflow.trace import LayerInfo, Trace
from tests.diagnosis.traces import chain


def test_grad_ratio_leaves_out_norm_and_frozen_layers() -> None:
    infos = [
        LayerInfo("emb", kind="Embedding"),
        LayerInfo("fc0"),
        LayerInfo("fc1", trainable=False),
        LayerInfo("fc2"),
        LayerInfo("ln", kind="LayerNorm"),
    ]
    g = np.array([[9.0, 2e-4, 5.0, 0.5, 7.0], [9.0, 0.0, 5.0, 0.0, 7.0]])
    t = Trace.build(infos, steps=[0, 1], grad_norm=g)
    assert chain_layers(t) == [1, 3]
    ratios = grad_ratio(t)
    assert ratios[0] == pytest.approx(4e-4) and np.isnan(ratios[1])  # 0/0 is unknown, not 0
    assert np.isnan(first_over_last(g, [1])).all()  # one layer is no chain


def test_the_vanishing_rule_and_the_trial_measure_the_same_ratio() -> None:
    # weight-gradient norms only: the rule's profile over identical rows is the per-step ratio
    g = [[0.2 ** (7 - j) for j in range(8)]] * 4
    t = Trace.build([f"fc{j}" for j in range(8)], steps=range(4), grad_norm=g)
    [f] = vanishing.rule(t)
    assert f.evidence["metric"] == "grad_norm"
    assert f.evidence["first_to_last"] == pytest.approx(float(grad_ratio(t)[0])) == 0.2**7


@pytest.mark.parametrize("layer", ["rnn", "enc/lstm.l1.reverse", "blocks.enc lstm"])
def test_bptt_keys_round_trip(layer: str) -> None:
    for field in ("dl_dh", "gain", "dl_dc", "gain_c", "steps", "kind"):
        assert parse_bptt_key(bptt_key(layer, field)) == (layer, field)
    extras = {bptt_key(layer, "steps"): np.zeros(1), bptt_key(layer, "gain"): np.ones((1, 4))}
    assert bptt_layers(extras) == [layer]
    assert bptt_layers({bptt_key(layer, "steps"): np.zeros(1)}) == []
    assert horizon_stats(extras, layer).horizon == 3  # flat gain: censored at T - 1
    assert parse_bptt_key("bptt/rnn/other") is None and parse_bptt_key("bptt//gain") is None
    with pytest.raises(GradientFlowError, match="unknown field 'curve'"):
        bptt_key(layer, "curve")


def test_selu_and_relu6_as_the_probe_names_them() -> None:
    # exploding with depth through SELU: LeCun init restores the self-normalising fixed point
    t = chain(np.sqrt(2), depth=12, activation="selu")
    [f] = exploding.rule(t)
    assert f.remedies[0] == "reinit:lecun"
    # ReLU6 units die like ReLU units
    infos = [LayerInfo("fc0"), LayerInfo("fc1", input_activation="relu6")]
    [d] = dead_units.rule(Trace.build(infos, steps=[0], in_dead_frac=[[np.nan, 0.95]]))
    assert d.severity == "critical" and d.layers == ["fc1"]
    # the remedies read modules with the same vocabulary
    selu = nn.Sequential(nn.Linear(4, 4), nn.SELU(), nn.Linear(4, 2))
    assert applies("selu", selu) == "every activation is selu already"
    assert applies("relu", nn.Sequential(nn.Linear(4, 4), nn.ReLU6())) is None


def test_each_rule_owns_its_remedies_and_prescribe_falls_back_to_them() -> None:
    defaults = default_remedies()
    assert set(defaults) >= {"vanishing", "exploding", "vanishing_through_time"}
    for kind, names in defaults.items():
        assert names and set(names) <= set(REGISTRY), kind
    assert defaults["exploding"] == exploding.REMEDIES["exploding"]
    from gradientflow.diagnosis.findings import Diagnosis, Finding

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    d = Diagnosis([Finding("dead_units", "critical", ["2"], {}, "Dead.", [])])
    assert [r.name for r in prescribe(d, model)][:3] == dead_units.REMEDIES["dead_units"][:3]
