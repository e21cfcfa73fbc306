"""benchmarks/ab.py: two versions of the code timed side by side (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import ab


def test_summary_takes_medians_of_per_round_ratios() -> None:
    s = ab.summary([1.2, 1.5, 1.3], [1.2, 1.2, 1.43])  # new/old per round: 1.0, 0.8, 1.1
    assert s["old"] == 1.3 and s["new"] == 1.2
    assert s["new_over_old"] == pytest.approx(1.0)
    assert (s["new_over_old_min"], s["new_over_old_max"]) == pytest.approx((0.8, 1.1))


@pytest.mark.skipif(not (ab.ROOT / ".git").exists(), reason="needs the repository's git history")
def test_the_old_worker_imports_the_revisions_package(tmp_path: Path) -> None:
    """The worker of --base imports the extracted package, not the installed (editable) one."""
    src = ab.extract("HEAD", tmp_path / "old")
    committed = subprocess.run(
        ["git", "-C", str(ab.ROOT), "show", "HEAD:src/gradientflow/monitor.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert (src / "gradientflow" / "monitor.py").read_text() == committed
    args = ab.parse(["--rounds", "2", "--steps", "1", "--warmup", "1"])
    worker = ab.Worker(src, "tiny_mlp", "default", args)
    try:
        assert Path(worker.package) == src / "gradientflow"
        assert worker.round(plain_first=True) > 0
    finally:
        worker.close()


def test_a_tiny_a_a_run_gives_both_ratios_per_round(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ab.json"
    ab.main(["--base", str(ab.ROOT / "src"), "--models", "tiny_mlp", "--schedules", "everything",
             "--rounds", "2", "--steps", "2", "--warmup", "1", "--json", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["tiny_mlp everything"]
    for name, r in results.items():
        assert name in text
        old, new = r["rounds"]
        assert len(old) == len(new) == 2 and all(x > 0 for x in old + new)
        per_round = [n / o for o, n in zip(old, new, strict=True)]
        assert r["new_over_old"] == pytest.approx(sum(per_round) / 2)  # median of two


def test_bad_arguments_are_named() -> None:
    with pytest.raises(SystemExit):
        ab.parse(["--schedules", "sometimes"])
    with pytest.raises(SystemExit):
        ab.parse(["--rounds", "1"])
