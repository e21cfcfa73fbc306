"""The number and text formatters of gradientflow: the rules' and preflight's messages and
every report (terminal, HTML, TensorBoard, plots). Torch-free, at the bottom of the layering.

Names and messages are data: :func:`printable` shows control characters escaped, so a layer
named ``"\\x1b[2J"`` cannot clear a terminal. Numbers: :func:`compact` and :func:`percent` in
the sentences of findings, :func:`number` for evidence (2-3 significant digits), :func:`sig3`
for table cells, :func:`sci` and :func:`pct` for the per-layer table, :func:`short` for
free-form values.

>>> printable("fc\\x1b[31m\\x07")
'fc\\\\x1b[31m\\\\x07'
>>> number(1e-18), number(0.5), sci(float("nan")), pct(0.25), sig3(float("nan"))
('1.00e-18', '0.5', '-', '25%', '–')
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Unicode format characters that reorder or hide text (bidirectional overrides, isolates).
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: Any) -> str:
    """``str(text)`` with control characters (C0, DEL, C1, bidi overrides) written as escapes.

    A name like ``"a\\nb"`` stays on one line (``a\\\\nb``); nothing else changes.

    >>> printable("blocks.0") == "blocks.0", printable("a\\tb")
    (True, 'a\\\\x09b')
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(
        _escape_char(ch) if unicodedata.category(ch) == "Cc" or ch in _BIDI else ch for ch in s
    )


def compact(x: float | None, digits: int = 2, small: float = 1e-3, big: float = 1e5) -> str:
    """A number for a sentence: ``digits`` significant digits, whole under ``big`` once it has
    more digits than that, and a short scientific form under ``small`` or from ``big`` on.

    >>> compact(0.1412), compact(530.2), compact(1.23e-18), compact(2e5), compact(None)
    ('0.14', '530', '1.2e-18', '2.0e5', '-')
    >>> compact(0.0123, digits=3, small=1e-2, big=1e4), compact(float("nan"))
    ('0.0123', 'nan')
    """
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    ax = abs(x)
    if ax < small or ax >= big:
        return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")
    if ax >= 10**digits:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def percent(x: float) -> str:
    """A fraction as a percentage for a sentence: one decimal under 9.5%.

    >>> percent(0.934), percent(0.0064)
    ('93%', '0.6%')
    """
    return f"{100 * x:.1f}%" if abs(x) < 0.095 else f"{100 * x:.0f}%"


def number(x: Any) -> str:
    """Evidence values for humans: floats with 2-3 significant digits.

    >>> number(123456.0), number(0.01234), number(float("inf")), number(3)
    ('1.23e+05', '0.0123', 'inf', '3')
    """
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x == 0:
            return "0"
        return f"{x:.2e}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.3g}"
    return printable(x)


def sci(x: float) -> str:
    """``1.23e-04``; ``-`` for NaN (not measured)."""
    return "-" if math.isnan(x) else f"{x:.2e}"


def pct(x: float) -> str:
    """``25%``; ``-`` for NaN (not measured)."""
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def sig3(value: Any, missing: str = "–", items: int = 8) -> str:
    """A table cell: numbers to 3 significant digits, ``missing`` for NaN, lists shortened.

    >>> sig3(1e308), sig3(float("-inf")), sig3([1.0, 2.5]), sig3(True)
    ('1e+308', '-inf', '[1, 2.5]', 'True')
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | np.floating | np.integer):
        x = float(value)
        if math.isnan(x):
            return missing
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.3g}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        shown = [sig3(v, missing, items) for v in list(value)[:items]]
        return "[" + ", ".join(shown) + ("…" if len(value) > items else "") + "]"
    return printable(value)


def short(value: Any, limit: int = 80) -> str:
    """A value in at most ``limit`` characters (floats to 4 significant digits).

    >>> short(0.123456), short("x" * 10, limit=5)
    ('0.1235', 'xxxx…')
    """
    text = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def layer_list(names: Sequence[Any], limit: int = 6) -> str:
    """``"0, 2, 4 ... 36 (15 layers)"`` for long lists; names shown :func:`printable`.

    >>> layer_list([str(i) for i in range(10)])
    '0, 1, 2, 3, 4 ... 9 (10 layers)'
    """
    shown = [printable(n) for n in names]
    if not shown:
        return "-"
    if len(shown) <= limit:
        return ", ".join(shown)
    return f"{', '.join(shown[: limit - 1])} ... {shown[-1]} ({len(shown)} layers)"


def plural(n: Any, word: str, words: str | None = None) -> str:
    """``n`` and ``word``, or ``words`` (default ``word + "s"``) unless ``n`` is one; whole
    numbers with thousands commas.

    >>> plural(1, "layer"), plural(1200, "parameter"), plural(2, "remedy", "remedies")
    ('1 layer', '1,200 parameters', '2 remedies')
    """
    shown = f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else str(n)
    return f"{shown} {word if n == 1 else words or word + 's'}"
