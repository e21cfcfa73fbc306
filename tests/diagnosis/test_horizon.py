"""Memory horizon, decay factor and the through-time rule, on curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradientflow.diagnosis.horizon import (
    bptt_layers,
    decay_factor,
    horizon_stats,
    memory_horizon,
)
from gradientflow.diagnosis.rules import all_rules
from gradientflow.diagnosis.rules.through_time import rule
from gradientflow.trace import Trace


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.8, 0.95])
def test_geometric_curve(rho: float) -> None:
    curve = 2.5 * rho ** np.arange(200)[::-1]
    # rho^d >= 1e-3  <=>  d <= ln(1e-3) / ln(rho)
    assert memory_horizon(curve) == math.floor(math.log(1e-3) / math.log(rho))
    assert decay_factor(curve) == pytest.approx(rho, rel=1e-9)


def test_censored_and_noisy_curves() -> None:
    assert memory_horizon(np.linspace(0.5, 1.0, 50)) == 49  # never below 1e-3: whole sequence
    assert memory_horizon([0.0, 1.0, 1.0]) == 1  # a zero stops it
    assert memory_horizon([1.0, 1.0, 0.0]) == 0  # nothing at the end: no memory
    assert memory_horizon([np.nan, np.nan, 0.5, 1.0]) == 1  # NaN padding is not a step
    assert decay_factor([2.0**-2000, 0.25, 0.5, 1.0]) == pytest.approx(0.5)  # underflow cut
    assert decay_factor([np.inf, 1.0]) == math.inf
    growing = 1.1 ** np.arange(30)
    assert decay_factor(growing[::-1]) == pytest.approx(1.1)


def _trace(curves: dict[str, tuple[str, np.ndarray]]) -> Trace:
    extras: dict[str, np.ndarray] = {}
    for name, (kind, rows) in curves.items():
        extras[f"bptt/{name}/gain"] = np.atleast_2d(rows)
        extras[f"bptt/{name}/dl_dh"] = np.atleast_2d(rows) * 0.1
        extras[f"bptt/{name}/steps"] = np.arange(len(np.atleast_2d(rows))) * 10
        extras[f"bptt/{name}/kind"] = np.array([kind])
    return Trace.build(["rnn", "lstm", "head"], steps=[0], extras=extras)


def test_rule_vanishing_exploding_and_healthy() -> None:
    d = np.arange(100)[::-1]
    t = _trace(
        {
            "rnn": ("RNN_TANH", np.stack([0.8**d, 0.7**d])),
            "lstm.l1": ("LSTM", 0.995**d),  # decays, but the horizon covers the sequence
            "gru.reverse": ("GRU", 0.9**d),
            "enc": ("RNN_TANH", 1.2**d),
            "dec": ("RNN_RELU", np.r_[np.inf, 1.2 ** d[1:]]),
        }
    )
    assert bptt_layers(t.extras) == ["rnn", "lstm.l1", "gru.reverse", "enc", "dec"]
    found = {f.layers[0]: f for f in rule(t)}
    assert set(found) == {"rnn", "gru", "enc", "dec"}  # the LSTM is healthy

    rnn = found["rnn"]
    rho = 0.7  # the horizon is judged on the latest sample (issue 14), its trend kept
    assert rnn.kind == "vanishing_through_time" and rnn.severity == "critical"
    assert rnn.evidence["decay_factor"] == pytest.approx(rho)
    assert rnn.evidence["horizon"] == math.floor(math.log(1e-3) / math.log(rho))
    assert rnn.evidence["trend"] == [math.floor(math.log(1e-3) / math.log(r)) for r in (0.8, 0.7)]
    assert rnn.evidence["seq_len"] == 100 and rnn.evidence["step"] == 10
    assert rnn.remedies == ["to_lstm", "to_gru", "reinit:orthogonal"]

    gru = found["gru"]
    assert gru.kind == "vanishing_through_time" and gru.severity == "warning"  # 65 of 100
    assert gru.remedies == ["reinit:orthogonal"]

    enc = found["enc"]
    assert enc.kind == "exploding_through_time" and enc.severity == "critical"
    assert enc.evidence["decay_factor"] == pytest.approx(1.2)
    assert enc.remedies == ["clip_gradients", "reinit:orthogonal"]
    assert found["dec"].kind == "exploding_through_time"
    assert found["dec"].evidence["first_over_last"] == math.inf
    for f in found.values():
        assert f.to_dict()["evidence"]["seq_len"] == 100  # JSON-safe


def test_rule_warning_severity_and_no_data() -> None:
    d = np.arange(40)[::-1]
    [f] = rule(_trace({"rnn": ("RNN_TANH", 0.83**d)}))  # horizon 37 of 40: a warning
    assert f.severity == "warning" and f.evidence["horizon"] == 37
    assert rule(Trace.build(["fc"], steps=[0])) == []
    assert "through_time" in all_rules()


def test_stats_from_saved_trace(tmp_path) -> None:
    d = np.arange(50)[::-1]
    t = _trace({"rnn": ("RNN_TANH", 0.6**d)})
    back = Trace.load(t.save(tmp_path / "run"))
    s = horizon_stats(back.extras, "rnn")
    assert (s.kind, s.seq_len, s.curve) == ("RNN_TANH", 50, "gain")
    assert [f.kind for f in rule(back)] == ["vanishing_through_time"]


def test_one_finding_per_module() -> None:
    d = np.arange(60)[::-1]
    t = _trace(
        {
            "enc.l0": ("LSTM", 0.8**d),
            "enc.l0.reverse": ("LSTM", 0.7**d),
            "enc.l1": ("LSTM", 0.999**d),
            "enc.l1.reverse": ("LSTM", 0.9**d),
        }
    )
    [f] = rule(t)
    assert f.layers == ["enc"] and f.evidence["sublayer"] == "enc.l0.reverse"
    assert f.evidence["horizons"] == {
        "enc.l0": 30,
        "enc.l0.reverse": 19,
        "enc.l1": 59,
        "enc.l1.reverse": 59,
    }
