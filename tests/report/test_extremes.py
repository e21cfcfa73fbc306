"""Names and numbers are data: `$...$` names are not mathtext, extreme and non-finite values
(1e308, 1e-300, inf, nan, a column never measured) draw, and the HTML holds them escaped."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from gradientflow.diagnosis.findings import Diagnosis, Finding
from gradientflow.report import plots
from gradientflow.report.html import render_html
from gradientflow.report.plots._mpl import plain
from gradientflow.trace import LayerInfo, Trace

pytest.importorskip("matplotlib")

NAMES = [r"$\frac{a}{$", "$x_1$", "a$b", "esc\x1b[31m", r"back\$slash", "plain"]
HUGE, TINY = 1e308, 1e-300


def extreme_trace() -> Trace:
    """Six layers, four steps: huge, tiny, inf, nan and -inf values; rel_update never measured
    for layer 5 and in_sat_frac never measured at all."""
    n = len(NAMES)
    grad = np.array(
        [
            [HUGE, TINY, 1.0, np.inf, np.nan, 5e-324],
            [TINY, HUGE, np.nan, 1.0, -np.inf, 0.0],
            [np.nan] * n,
            [HUGE, HUGE, HUGE, TINY, TINY, TINY],
        ]
    )
    rel = np.abs(grad[::-1]) * 1e-3
    rel[:, 5] = np.nan
    layers = [
        LayerInfo(x, "Linear", 10, True, None if i == 0 else "sigmoid") for i, x in enumerate(NAMES)
    ]
    extras = {
        f"bptt/{NAMES[0]}/dl_dh": np.array([[TINY, 1.0, HUGE, np.inf], [np.nan] * 4]),
        f"bptt/{NAMES[0]}/gain": np.array([[1e-300, 1e-150, 1.0, 1.0], [1.0, np.nan, 1.0, 1.0]]),
    }
    return Trace.build(
        layers,
        steps=[0, 1, 2, 3],
        grad_norm=grad,
        rel_update=rel,
        out_grad_norm=grad * 0.5,
        in_dead_frac=[[np.nan, 0.0, 1.0, 0.5, np.nan, 0.0]] * 4,
        loss=[HUGE, TINY, np.inf, np.nan],
        global_grad_norm=[HUGE, np.nan, np.inf, TINY],
        extras=extras,
    )


def _draw(fig: object) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)  # type: ignore[attr-defined]
    return buf.getvalue()


def _texts(fig: object) -> list[object]:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text()]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "draw",
    [
        plots.gradient_profile,
        plots.heatmap,
        lambda t: plots.heatmap(t, "rel_update"),
        lambda t: plots.heatmap(t, "in_sat_frac"),
        plots.activation_health,
        plots.loss_curve,
        plots.recurrent_time_steps,
    ],
    ids=["profile", "heat-grad", "heat-update", "heat-never-measured", "act", "loss", "bptt"],
)
def test_every_plot_draws_extreme_values_and_shows_names_literally(draw: object) -> None:
    fig = draw(extreme_trace())  # type: ignore[operator]
    assert _draw(fig).startswith(b"\x89PNG")
    shown = set()
    for text in _texts(fig):
        raw = text.get_text()  # type: ignore[attr-defined]
        literal, is_math = text._preprocess_math(raw)  # type: ignore[attr-defined]
        if any(
            name in literal or "…" in literal for name in ("x_1", "frac", "a$b", "slash", "esc")
        ):
            assert not is_math, raw
            shown.add(literal)
    if draw not in (plots.loss_curve, plots.recurrent_time_steps):
        assert {"$x_1$", "a$b", r"back\$slash"} <= shown  # exactly the names, unparsed
        assert any(r"esc\x1b[31m" in s for s in shown)


def test_plain_round_trips_through_matplotlib() -> None:
    from matplotlib.text import Text

    for name in [*NAMES, "$", "$$", "\\", "\\$", "a\\\\$b$"]:
        literal, is_math = Text(text=plain(name))._preprocess_math(plain(name))
        assert not is_math and literal == name.replace("\x1b", "\\x1b")


def test_trial_chart_with_extreme_values() -> None:
    rows = [
        {"name": "baseline", "final_loss": HUGE, "best_loss": TINY, "grad_ratio": TINY},
        {"name": "$a$", "final_loss": math.inf, "metric": math.nan, "grad_ratio": HUGE},
        {"name": "nan", "final_loss": math.nan, "best_loss": math.nan, "grad_ratio": math.inf},
    ]
    fig = plots.trial_chart(rows)
    assert _draw(fig).startswith(b"\x89PNG")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[1] == r"\$a\$"


def test_html_with_plots_holds_extreme_values_and_escaped_names() -> None:
    t = extreme_trace()
    d = Diagnosis(
        [
            Finding(
                "exploding",
                "critical",
                NAMES[:2],
                {"norm": HUGE, "tiny": TINY, "bad": [math.inf, math.nan]},
                "Huge \x07 gradients.",
                ["clip_gradients"],
            )
        ]
    )
    page = render_html(t, d, trial=[{"name": "<b>", "final_loss": HUGE, "grad_ratio": TINY}])
    assert "1e+308" in page and "1e-300" in page and "inf" in page
    assert "\x1b" not in page and "\x07" not in page
    assert "<td class='name'>&lt;b&gt;</td>" in page and "<td class='name'><b>" not in page
    assert "esc\\x1b[31m" in page and "Huge \\x07 gradients." in page
    assert page.count("<img ") == 7  # five plots, the recurrent plot, the trial chart
