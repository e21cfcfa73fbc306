"""Plots on hand-made Traces: the data on the axes, log scales, NaN/Inf and single-step traces."""

from __future__ import annotations

import io

import numpy as np
import pytest

from gradientflow.errors import GradientFlowError
from gradientflow.report import plots
from gradientflow.trace import Trace
from tests.report.traces import N_LAYERS, N_STEPS, vanishing

pytest.importorskip("matplotlib")


def _png(fig: object) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)  # type: ignore[attr-defined]
    return buf.getvalue()


def test_profile_draws_each_chosen_step_on_a_log_axis() -> None:
    t = vanishing()
    fig = plots.gradient_profile(t, steps=[0, 55])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    solid = [ln for ln in ax.lines if ln.get_linestyle() == "-"]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert [ln.get_label() for ln in solid] == ["step 0", "step 55"]
    np.testing.assert_allclose(solid[0].get_ydata(), 10.0 ** np.arange(-5, 1))
    np.testing.assert_allclose(solid[1].get_ydata(), 10.0 ** np.arange(-5, 1) * 2.1)
    np.testing.assert_allclose(solid[0].get_xdata(), np.arange(N_LAYERS))
    np.testing.assert_allclose(dashed[0].get_ydata(), 10.0 ** np.arange(-5, 1) / 2)
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    assert labels == [f"fc{i}" for i in range(N_LAYERS)]  # input on the left


def test_profile_default_steps_span_the_run_and_skip_missing_out_grad() -> None:
    t = Trace.build(["a", "b"], steps=range(10), grad_norm=np.ones((10, 2)))
    assert plots.pick_rows(t) == [0, 3, 6, 9]
    assert plots.pick_rows(t, [4, 4, 100]) == [4, 9]  # nearest recorded rows, no repeats
    ax = plots.gradient_profile(t).axes[0]
    assert len(ax.lines) == 4  # no dashed lines: out_grad_norm was not recorded


def test_heatmap_holds_measured_rows_with_a_log_colour_scale() -> None:
    from matplotlib.colors import LogNorm

    t = vanishing()
    mesh = plots.heatmap(t, "rel_update").axes[0].collections[0]
    data = mesh.get_array()
    measured = t.metrics["rel_update"][[0, 4, 8]]  # measured every 4th row only
    np.testing.assert_allclose(np.asarray(data).reshape(N_LAYERS, 3), measured.T)
    assert isinstance(mesh.norm, LogNorm)
    assert mesh.norm.vmin == pytest.approx(measured.min())
    assert mesh.norm.vmax == pytest.approx(measured.max())
    grad_mesh = plots.heatmap(t).axes[0].collections[0]
    assert np.asarray(grad_mesh.get_array()).size == N_LAYERS * N_STEPS
    with pytest.raises(GradientFlowError, match="unknown metric 'nope'"):
        plots.heatmap(t, "nope")


def test_activation_bars_are_the_latest_measurement() -> None:
    t = vanishing()
    ax = plots.activation_health(t).axes[0]
    dead, sat = ax.containers[0], ax.containers[1]
    np.testing.assert_allclose(
        [b.get_height() for b in sat], [0.0, *np.linspace(0.8, 0.1, N_LAYERS)[1:]]
    )
    np.testing.assert_allclose(
        [b.get_height() for b in dead], [0.0, *np.linspace(0.0, 0.05, N_LAYERS)[1:]]
    )
    assert ax.get_ylim() == (0.0, 1.05)


def test_loss_curve_data_and_log_scale_for_wide_ranges() -> None:
    t = vanishing()
    ax = plots.loss_curve(t).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), t.steps)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), t.loss)
    assert ax.get_yscale() == "linear"
    wide = Trace.build(["a"], steps=[0, 1, 2], loss=[10.0, 1.0, 0.01])
    assert plots.loss_curve(wide).axes[0].get_yscale() == "log"


def test_loss_curve_at_or_below_zero_stays_linear_and_draws_every_loss() -> None:
    # a loss that crosses zero (Gaussian NLL, ELBO) and spans far more than 100x
    loss = np.r_[np.geomspace(500, 0.5, 30), np.linspace(0.3, -3.0, 30)]
    t = Trace.build(["a"], steps=range(60), loss=loss)
    ax = plots.loss_curve(t).axes[0]
    assert ax.get_yscale() == "linear"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), loss)
    zero = Trace.build(["a"], steps=[0, 1, 2], loss=[10.0, 1.0, 0.0])
    ax = plots.loss_curve(zero).axes[0]
    assert ax.get_yscale() == "linear"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [10.0, 1.0, 0.0])


def _broken() -> Trace:
    grad = np.array([[1e-3, np.inf, 1.0], [np.nan, 0.0, 1.0], [-1.0, 1e-2, np.nan]])
    return Trace.build(
        ["a", "b", "c"],
        steps=[0, 1, 2],
        grad_norm=grad,
        rel_update=np.full((3, 3), np.inf),
        nonfinite=[[0, 4, 0], [2, 0, 0], [0, 0, 1]],
        loss=[2.3, np.inf, np.nan],
        skipped=[0, 1, 0],
        extras={"bptt/r/dl_dh": np.array([[np.nan, np.inf, 0.0, 1.0]])},
    )


def test_nan_and_inf_are_left_out_and_counted() -> None:
    t = _broken()
    ax = plots.gradient_profile(t, steps=[0]).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1e-3, np.nan, 1.0])
    notes = [txt.get_text() for txt in ax.texts]
    assert any("1 zero or non-finite" in n for n in notes)
    heat = plots.heatmap(t, "rel_update").axes[0]
    assert any("no positive finite" in txt.get_text() for txt in heat.texts)
    loss_ax = plots.loss_curve(t).axes[0]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [2.3])
    red = [ln for ln in loss_ax.lines[1:] if ln.get_label() in ("non-finite loss", "skipped step")]
    assert len(red) == 2  # one non-finite loss line, one skipped-step line, both at step 1
    for draw in (
        plots.gradient_profile,
        plots.heatmap,
        plots.activation_health,
        plots.loss_curve,
        plots.recurrent_time_steps,
    ):
        assert _png(draw(t)).startswith(b"\x89PNG")


@pytest.mark.parametrize("n_records", [0, 1])
def test_single_step_and_empty_traces_still_draw(n_records: int) -> None:
    t = Trace.build(
        ["a", "b"],
        steps=range(n_records),
        grad_norm=np.ones((n_records, 2)),
        rel_update=np.full((n_records, 2), 1e-3),
        loss=np.ones(n_records),
    )
    for draw in (
        plots.gradient_profile,
        plots.heatmap,
        plots.activation_health,
        plots.loss_curve,
        plots.recurrent_time_steps,
    ):
        assert _png(draw(t)).startswith(b"\x89PNG")
    if n_records == 1:
        mesh = plots.heatmap(t, "rel_update").axes[0].collections[0]
        assert np.asarray(mesh.get_array()).size == 2


def test_recurrent_time_steps_plots_each_sample_and_handles_absence() -> None:
    t = vanishing(rnn=True)
    assert plots.recurrent_layers(t) == ["rnn"]
    ax = plots.recurrent_time_steps(t).axes[0]
    assert ax.get_yscale() == "log"
    assert [ln.get_label() for ln in ax.lines] == ["step 0", "step 50"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 10.0 ** np.linspace(-6, 0, 20))
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.arange(20))
    assert any("gets 0.001 of" in txt.get_text() for txt in ax.texts)  # latest: 1e-3 / 1
    gain_only = Trace.build(
        ["a"],
        steps=[0],
        extras={
            "bptt/lstm.l0/gain": np.array([[np.nan, 1e-4, 1e-2, 1.0]]),
            "bptt/lstm.l0/steps": np.array([7]),
        },
    )
    assert plots.recurrent_layers(gain_only) == ["lstm.l0"]
    ax = plots.recurrent_time_steps(gain_only).axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["step 7"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [np.nan, 1e-4, 1e-2, 1.0])
    assert any("gets 0.0001 of" in txt.get_text() for txt in ax.texts)
    both = vanishing(rnn=True)
    both.extras["bptt/rnn/gain"] = np.ones((2, 20))
    ax = plots.recurrent_time_steps(both).axes[0]
    assert [ln.get_linestyle() for ln in ax.lines] == ["-", "--", "-", "--"]
    empty = plots.recurrent_time_steps(vanishing())
    assert any("no per-time-step" in txt.get_text() for txt in empty.axes[0].texts)
    with pytest.raises(GradientFlowError, match="no per-time-step gradients for layer 'fc0'"):
        plots.recurrent_time_steps(t, "fc0")


class _Result:
    """A trial result in another helper's shape: ``to_dict()`` with rows of mixed types."""

    def to_dict(self) -> dict[str, object]:
        return {
            "rows": [
                {
                    "name": "baseline",
                    "final_loss": 2.3,
                    "best_loss": 2.2,
                    "metric": 0.1,
                    "grad_ratio": 1e-18,
                },
                {
                    "name": "relu+he",
                    "final_loss": "0.2",
                    "best_loss": None,
                    "metric": 0.94,
                    "grad_ratio": 1.0,
                    "extra": "ignored",
                },
                {"remedy": "batchnorm", "final_loss": float("nan")},
            ]
        }


def test_trial_chart_is_lenient_and_draws_the_numbers() -> None:
    rows = plots.trial_rows(_Result())
    assert [r["name"] for r in rows] == ["baseline", "relu+he", "batchnorm"]
    assert rows[1]["final_loss"] == 0.2 and np.isnan(rows[1]["best_loss"])
    fig = plots.trial_chart(_Result())
    loss_ax, metric_ax, ratio_ax = fig.axes
    np.testing.assert_allclose([b.get_width() for b in loss_ax.containers[0]], [2.3, 0.2, 0.0])
    np.testing.assert_allclose([b.get_width() for b in metric_ax.containers[0]], [0.1, 0.94, 0])
    assert ratio_ax.get_xscale() == "log"
    assert [t.get_text() for t in loss_ax.get_yticklabels()] == ["baseline", "relu+he", "batchnorm"]
    assert any(t.get_text() == "n/a" for t in loss_ax.texts)
    assert len(plots.trial_chart([]).axes) == 1


def test_trial_chart_labels_a_gradient_ratio_of_exactly_zero() -> None:
    # a ratio of 0 has no bar on the log axis: like a NaN, it says what it is
    rows = [
        {"name": "baseline", "final_loss": 2.3, "best_loss": 2.2, "metric": 0.1, "grad_ratio": 0.0},
        {"name": "relu", "final_loss": 0.2, "best_loss": 0.2, "metric": 0.9, "grad_ratio": 0.5},
    ]
    fig = plots.trial_chart(rows)
    ratio_ax = fig.axes[2]
    assert [t.get_text() for t in ratio_ax.texts] == ["0"]


def test_a_layer_name_the_font_lacks_draws_without_warnings() -> None:
    import warnings

    from gradientflow.report.html_data import figure_to_img
    from gradientflow.report.plots._mpl import new_figure

    fig = new_figure(3, 2)
    fig.suptitle("层 注意力")  # CJK: not in the default font, drawn as boxes
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert figure_to_img(fig, "x", "x").startswith("<img id='plot-x'")
    assert [str(w.message) for w in seen] == []
