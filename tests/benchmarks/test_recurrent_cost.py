"""benchmarks/recurrent_cost.py runs end to end on a tiny configuration (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import recurrent_cost


def test_it_prints_both_groups(capsys: pytest.CaptureFixture[str]) -> None:
    recurrent_cost.main(["--rounds", "1", "--steps", "1", "--period", "1"])
    out = capsys.readouterr().out
    assert "lstm2 default schedule" in out and "lstm2 Schedule.everything()" in out
    assert out.count("every=4") == 2 and out.count("every=1") == 2


def test_a_default_schedule_round_holds_one_sparse_replay() -> None:
    assert recurrent_cost.PERIOD == 200
