"""TensorBoard events read back with TensorBoard's own event reader: tags, steps and values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gradientflow.errors import GradientFlowError
from gradientflow.report.tensorboard import (
    TensorBoardWriter,
    diagnosis_markdown,
    write_tensorboard,
)
from gradientflow.trace import Trace
from tests.report.traces import N_STEPS, diagnosis_for, vanishing

pytest.importorskip("tensorboard")


def _read(log_dir: Path) -> object:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _series(acc: object, tag: str) -> tuple[list[int], list[float]]:
    events = acc.Scalars(tag)  # type: ignore[attr-defined]
    return [e.step for e in events], [e.value for e in events]


def test_scalars_per_layer_read_back(tmp_path: Path) -> None:
    t = vanishing()
    write_tensorboard(t, tmp_path / "tb", diagnosis_for(t))
    acc = _read(tmp_path / "tb")
    scalars = set(acc.Tags()["scalars"])  # type: ignore[attr-defined]
    expected = {f"{m}/fc{i}" for m in ("grad_norm", "rel_update") for i in range(6)}
    assert expected | {"loss", "global_grad_norm", "grad_ratio/first_over_last"} == scalars
    steps, values = _series(acc, "grad_norm/fc0")
    assert steps == list(t.steps)
    np.testing.assert_allclose(values, t.metrics["grad_norm"][:, 0], rtol=1e-6)  # float32
    steps, values = _series(acc, "rel_update/fc5")
    assert steps == [0, 20, 40]  # measured on every 4th row only: NaN rows are not written
    np.testing.assert_allclose(values, t.metrics["rel_update"][[0, 4, 8], 5], rtol=1e-6)
    _, ratio = _series(acc, "grad_ratio/first_over_last")
    np.testing.assert_allclose(ratio, np.full(N_STEPS, 1e-5), rtol=1e-5)
    _, loss = _series(acc, "loss")
    np.testing.assert_allclose(loss, t.loss, rtol=1e-6)


def test_findings_are_written_as_text(tmp_path: Path) -> None:
    t = vanishing(["fc0", "<b>x</b>", "fc2", "fc3", "fc4", "fc5"])
    write_tensorboard(t, tmp_path, diagnosis_for(t))
    acc = _read(tmp_path)
    assert "diagnosis/text_summary" in acc.Tags()["tensors"]  # type: ignore[attr-defined]
    (event,) = acc.Tensors("diagnosis/text_summary")  # type: ignore[attr-defined]
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == int(t.steps[-1])
    assert text.startswith("### Critical: 2 problems found")
    assert "**critical · vanishing** in `fc0`, `<b>x</b>`" in text  # a code span: literal
    assert "remedies: `swap_activation:relu`, `batchnorm`" in text
    from tensorboard.plugin_util import markdown_to_safe_html

    html = markdown_to_safe_html(text)
    assert "<b>" not in html and "<code>&lt;b&gt;x&lt;/b&gt;</code>" in html


def test_non_finite_gradient_norms_are_data(tmp_path: Path) -> None:
    t = Trace.build(
        ["a", "b"],
        steps=[0, 1, 2],
        grad_norm=[[1.0, 2.0], [math.inf, 2.0], [math.nan, math.nan]],
        nonfinite=[[0, 0], [3, 0], [1, 0]],
    )
    write_tensorboard(t, tmp_path)
    acc = _read(tmp_path)
    steps, values = _series(acc, "grad_norm/a")
    assert steps == [0, 1, 2] and values[0] == 1.0 and math.isinf(values[1])
    assert math.isnan(values[2])  # measured NaN (the gradient held NaN): written
    steps, _ = _series(acc, "grad_norm/b")
    assert steps == [0, 1]  # NaN without non-finite entries = not measured: skipped


def test_streaming_writer_writes_each_step_once(tmp_path: Path) -> None:
    t = vanishing()
    with TensorBoardWriter(tmp_path, metrics=["grad_norm"]) as writer:
        assert writer.write(t.head(20)) == 4
        assert writer.write(t.head(20)) == 0
        assert writer.write(t) == N_STEPS - 4
    steps, _ = _series(_read(tmp_path), "grad_norm/fc3")
    assert steps == list(t.steps)
    with pytest.raises(GradientFlowError, match="unknown metrics"):
        TensorBoardWriter(tmp_path, metrics=["gradnorm"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(GradientFlowError, match="is not a folder"):
        TensorBoardWriter(tmp_path / "file")


def test_healthy_markdown() -> None:
    from gradientflow.diagnosis.findings import Diagnosis

    assert diagnosis_markdown(Diagnosis([])).startswith("### Healthy")


def test_names_cannot_inject_markdown() -> None:
    """Layer names in TensorBoard's text, rendered by TensorBoard's own Markdown: shown as
    written, no link, emphasis or table cell; ``<`` once escaped inside a code span."""
    from tensorboard.plugin_util import markdown_to_safe_html

    from gradientflow.diagnosis.findings import Diagnosis, Finding

    names = ["<fc>", "[click me](http://evil.example/x)", "a*b*c", "fc|x", "back\\slash_1_"]
    message = f"first layer ({names[1]}) and '{names[2]}' of '{names[0]}' via {names[4]}."
    finding = Finding("vanishing", "critical", names, {"first_layer": names[1]}, message)
    html = markdown_to_safe_html(diagnosis_markdown(Diagnosis([finding])))
    assert "<a" not in html and "<em>" not in html and "<table" not in html
    assert "&amp;lt;" not in html  # no double escape
    assert "<code>&lt;fc&gt;</code>" in html and "<code>a*b*c</code>" in html
    assert "first layer ([click me](http://evil.example/x)) and 'a*b*c'" in html
    assert "of '&lt;fc&gt;' via back\\slash_1_." in html
    assert "first_layer = [click me](http://evil.example/x)" in html
