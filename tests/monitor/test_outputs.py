"""The monitor's own outputs: TensorBoard while training, the HTML report, the summary table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import Schedule


def _train(mon_kwargs: dict, steps: int = 12) -> gradientflow.Monitor:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Sigmoid(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradientflow.watch(model, opt, schedule=Schedule.everything(), **mon_kwargs) as mon:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(16, 5)).pow(2).mean()
            loss.backward()
            mon.log(loss=loss)
            opt.step()
    return mon


def test_watch_streams_to_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mon = _train({"tensorboard": tmp_path / "tb", "flush_every": 5})
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    events = acc.Scalars("grad_norm/0")
    assert [e.step for e in events] == list(range(12))
    assert events[3].value == pytest.approx(mon.trace.metrics["grad_norm"][3, 0], rel=1e-6)
    assert "diagnosis/text_summary" in acc.Tags()["tensors"]


def test_report_and_summary(tmp_path: Path) -> None:
    mon = _train({})
    path = mon.report(tmp_path / "r.html")
    html = Path(path).read_text()
    assert "<html" in html.lower() and "data:image/png;base64" in html
    table = mon.summary().splitlines()
    assert table[0].split()[:3] == ["depth", "layer", "kind"]
    assert [row.split()[1] for row in table[1:]] == ["0", "2"]


class _Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@pytest.mark.parametrize("through_time", [True, False])
def test_recurrent_layers_get_a_through_time_probe(through_time: bool) -> None:
    torch.manual_seed(0)
    model = _Seq()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with gradientflow.watch(model, opt, through_time=through_time) as mon:
        for _ in range(6):
            opt.zero_grad()
            model(torch.randn(4, 12, 3)).pow(2).mean().backward()
            opt.step()
    extras = mon.trace.extras
    if not through_time:
        assert not extras
        return
    dl_dh = extras["bptt/lstm/dl_dh"]
    assert dl_dh.shape[1] == 12  # one value per time step
    assert np.isfinite(dl_dh).all() and (dl_dh > 0).all()
