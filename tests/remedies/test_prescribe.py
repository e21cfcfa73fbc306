"""prescribe: ranking from hand-made findings, structure corrections, applicability."""

from __future__ import annotations

import pytest
from torch import nn

from gradientflow.demo import mlp
from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.errors import GradientFlowError
from gradientflow.remedies import REGISTRY, Remedy, prescribe
from gradientflow.remedies.prescribe import DEFAULTS, not_applicable

NAMES = [
    "swap_activation:relu",
    "swap_activation:leaky_relu",
    "swap_activation:prelu",
    "swap_activation:elu",
    "swap_activation:selu",
    "add_batchnorm",
    "add_residual",
    "to_lstm",
    "to_gru",
    "reinit:he",
    "reinit:xavier",
    "reinit:lecun",
    "reinit:orthogonal",
    "clip_gradients",
    "layerwise_pretrain",
    "faster_hardware",
    "lower_lr",
    "raise_lr",
]


def _finding(kind: str, severity: str, remedies: list[str]) -> Finding:
    return Finding(kind, severity, ["0"], {"ratio": 1e-18}, f"{kind} found. More text.", remedies)


class RNNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, 4)
        self.head = nn.Linear(4, 1)


def test_every_name_findings_use_is_registered() -> None:
    assert set(NAMES) <= set(REGISTRY)
    for names in DEFAULTS.values():
        assert set(names) <= set(REGISTRY)
    assert all(isinstance(REGISTRY[n], Remedy) for n in NAMES)


def test_ranking_follows_severity_and_position() -> None:
    d = Diagnosis(
        [
            _finding("saturation", "warning", ["add_batchnorm", "swap_activation:relu"]),
            _finding("vanishing", "critical", ["swap_activation:relu", "add_residual"]),
        ]
    )
    ranked = prescribe(d, mlp(depth=4))
    # relu: 3/1 + 1/2 = 3.5; residual: 3/2 = 1.5; batchnorm: 1/1 = 1
    assert [r.name for r in ranked] == ["swap_activation:relu", "add_residual", "add_batchnorm"]
    assert ranked[0].score == pytest.approx(3.5)
    assert "vanishing (critical): vanishing found" in ranked[0].why
    assert ranked[0].findings == ["vanishing", "saturation"]  # most severe first


def test_inapplicable_remedies_are_left_out_and_explained() -> None:
    d = Diagnosis(
        [_finding("vanishing_through_time", "critical", ["to_lstm", "to_gru", "reinit:orthogonal"])]
    )
    assert [r.name for r in prescribe(d, mlp(depth=3))] == ["reinit:orthogonal"]
    assert [r.name for r in prescribe(d, RNNNet())] == ["to_lstm", "to_gru", "reinit:orthogonal"]
    assert "no vanilla nn.RNN" in not_applicable(d, mlp(depth=3))["to_lstm"]


def test_sigmoid_nets_rank_init_down_and_defaults_fill_in() -> None:
    d = Diagnosis([_finding("vanishing", "critical", ["reinit:xavier", "add_batchnorm"])])
    ranked = [r.name for r in prescribe(d, mlp(depth=4))]
    assert ranked == ["add_batchnorm", "reinit:xavier"]  # 0.75 < 1.5
    tanh = mlp(depth=4, activation=nn.Tanh)
    assert prescribe(d, tanh)[0].name == "reinit:xavier"
    empty = Diagnosis([_finding("exploding", "warning", [])])
    assert [r.name for r in prescribe(empty, mlp(depth=3))][:2] == DEFAULTS["exploding"][:2]


def test_healthy_diagnosis_gets_nothing_and_bad_input_errors() -> None:
    assert prescribe(Diagnosis([_finding("vanishing", "info", ["add_batchnorm"])]), mlp()) == []
    with pytest.raises(
        GradientFlowError, match=r"expected a Diagnosis \(or a Preflight\) and an nn.Module"
    ):
        prescribe("diagnosis", mlp())


def test_limit_must_be_a_whole_number_at_least_0() -> None:
    d = Diagnosis([_finding("vanishing", "critical", ["swap_activation:relu", "add_batchnorm"])])
    assert [r.name for r in prescribe(d, mlp(), limit=1)] == ["swap_activation:relu"]
    assert prescribe(d, mlp(), limit=0) == []
    for limit in (-1, 2.5, "3", True):
        with pytest.raises(GradientFlowError, match=r"`limit` must be a whole number >= 0"):
            prescribe(d, mlp(), limit=limit)  # type: ignore[arg-type]


def test_a_finding_naming_only_unknown_remedies_is_an_error_not_healthy() -> None:
    d = Diagnosis([_finding("vanishing", "critical", ["swap_activatoin:relu"])])
    with pytest.raises(GradientFlowError, match=r"did you mean 'swap_activation:relu'"):
        prescribe(d, mlp())
    # one known name among unknown ones is enough; an info finding is not looked at
    mixed = Diagnosis([_finding("vanishing", "critical", ["nope", "add_batchnorm"])])
    assert [r.name for r in prescribe(mixed, mlp())] == ["add_batchnorm"]
    assert prescribe(Diagnosis([_finding("vanishing", "info", ["nope"])]), mlp()) == []


def test_an_unknown_severity_is_an_error_naming_it() -> None:
    with pytest.raises(GradientFlowError, match=r"severity must be one of .*got 'severe'"):
        _finding("vanishing", "severe", [])


def test_a_preflight_is_prescribed_for_as_its_findings() -> None:
    import torch

    from gradientflow.preflight import preflight

    model = mlp()  # the demo's 20-layer sigmoid MLP: vanishing at init
    pf = preflight(model, torch.randn(64, 64))
    expected = prescribe(Diagnosis(list(pf.findings)), model)
    got = prescribe(pf, model)
    assert got and [r.name for r in got] == [r.name for r in expected]
    assert [r.why for r in got] == [r.why for r in expected]
