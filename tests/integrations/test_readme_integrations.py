"""The README's integration examples run as written (in a temporary folder).

Slow: each imports its framework and draws the HTML report (20-90 s on a shared CPU)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet(heading: str) -> str:
    text = README.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"README section {heading!r} should hold one python example"
    return blocks[0]


@pytest.mark.slow
def test_readme_lightning_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lightning")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(_snippet("With Lightning"), "README:lightning", "exec"), namespace)
    run_dir = tmp_path / "lightning_logs" / "version_0" / "gradientflow"
    assert (run_dir / "report.html").is_file() and (run_dir / "diagnosis.json").is_file()
    assert namespace["gf"].monitor.trace.n_records == 16  # type: ignore[attr-defined]


@pytest.mark.slow
def test_readme_transformers_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(_snippet("With the Hugging Face Trainer"), "README:hf", "exec"), namespace)
    run_dir = tmp_path / "out" / "gradientflow"
    assert (run_dir / "report.html").is_file() and (run_dir / "diagnosis.json").is_file()
    assert namespace["gf"].monitor.trace.n_records == 16  # type: ignore[attr-defined]
