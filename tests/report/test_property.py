"""Property tests over random traces: the terminal text and the HTML never raise, and every
layer name appears in them escaped (no raw control character, no raw markup)."""

from __future__ import annotations

import re
import unicodedata
from html import escape

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradientflow._format import printable  # noqa: E402
from gradientflow.diagnosis import diagnose  # noqa: E402
from gradientflow.report.html import render_html  # noqa: E402
from gradientflow.report.terminal import layer_table, render  # noqa: E402
from gradientflow.trace import Trace  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;]*m")
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e-300, 5e-324, 0.0, float("nan"), float("inf")]),
)
NAMES = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
    min_size=1,
    max_size=5,
    unique=True,
)
COLUMNS = ("grad_norm", "rel_update", "out_grad_norm", "in_dead_frac", "in_sat_frac")


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    names = draw(NAMES)
    n_steps = draw(st.integers(0, 4))
    shape = (n_steps, len(names))
    columns = {
        key: np.array(
            draw(st.lists(VALUES, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
        ).reshape(shape)
        for key in draw(st.sets(st.sampled_from(COLUMNS)))
    }
    loss = draw(st.lists(VALUES, min_size=n_steps, max_size=n_steps))
    return Trace.build(names, steps=range(0, 10 * n_steps, 10), loss=loss, **columns)


def _no_control(text: str) -> bool:
    return not any(
        (unicodedata.category(ch) == "Cc" and ch != "\n") or ch in "\u202e\u2066" for ch in text
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces(), st.booleans())
def test_terminal_text_never_raises_and_escapes_names(trace: Trace, color: bool) -> None:
    diagnosis = diagnose(trace)
    text = render(diagnosis, layer_table(trace, color=color), color=color)
    plain = ANSI.sub("", text)
    assert _no_control(plain)
    for name in trace.layer_names:
        assert printable(name) in plain
    if color:
        assert plain == render(diagnosis, layer_table(trace))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces())
def test_html_never_raises_and_escapes_names(trace: Trace) -> None:
    page = render_html(trace, include_plots=False)
    assert _no_control(page)
    body = page[page.index("<body>") :]
    for name in trace.layer_names:
        assert f"<td class='name'>{escape(printable(name))}</td>" in body
