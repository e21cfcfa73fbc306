"""The peers benchmark's harness runs end to end on a tiny configuration (no timing asserted)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from benchmarks._harness import CASES, Participant, interleave, ratio_stats, summarise

from benchmarks import _peers, gpu, peers


def test_ratio_stats_are_per_round_ratios() -> None:
    # rounds: 2/1, 3/2, 8/2 -> ratios 2, 1.5, 4: median 2, range 1.5..4
    s = ratio_stats([2.0, 3.0, 8.0], [1.0, 2.0, 2.0])
    assert s == {"median": 2.0, "min": 1.5, "max": 4.0}
    table = summarise({"plain": [0.01, 0.02], "x": [0.02, 0.06]})
    assert table["plain"]["median"] == 1.0
    assert table["x"]["median"] == pytest.approx(2.5)  # ratios 2 and 3
    assert table["x"]["ms"] == pytest.approx(40.0)  # median of 20 ms and 60 ms


def test_interleave_rotates_the_order_of_participants() -> None:
    order: list[str] = []
    crowd = [Participant(n, CASES["tiny_mlp"], torch.device("cpu")) for n in ("a", "b", "c")]
    for p in crowd:
        p.hook = lambda step, loss, name=p.name: order.append(name)  # type: ignore[misc]
    times = interleave(crowd, rounds=3, steps=1)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(t) == 3 and all(x > 0 for x in t) for t in times.values())


def test_twins_start_from_the_same_weights() -> None:
    a = Participant("plain", CASES["tiny_mlp"], torch.device("cpu"))
    a.run(2)  # the twin copies the current weights, not a fresh initialisation
    b = a.twin("other")
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_tiny_run_gives_a_ratio_per_watcher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "peers.json"
    peers.main(["--models", "tiny_mlp", "--rounds", "2", "--steps", "3", "--warmup", "1",
                "--json", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    ratios = data["ratios"]["tiny_mlp"]
    assert list(ratios) == list(_peers.WATCHERS)
    assert ratios["plain"]["median"] == 1.0
    for name, r in ratios.items():
        assert name in text
        if _peers.available(name) is not None:  # a peer package missing here: said so
            assert "not installed" in r["skipped"]
            continue
        assert math.isfinite(r["median"]) and r["median"] > 0, name
        assert r["min"] <= r["median"] <= r["max"], name
    assert data["meta"]["rounds"] == 2 and data["meta"]["steps"] == 3


def test_a_watcher_over_budget_is_skipped_and_says_why() -> None:
    argv = [
        "--models",
        "tiny_mlp",
        "--rounds",
        "2",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--budget-s",
        "0",
    ]
    args = peers.parse([*argv, "--methods", "plain,.item() per param"])
    results = peers.measure(CASES["tiny_mlp"], ["plain", ".item() per param"], args)
    assert results["plain"]["median"] == 1.0  # plain is never skipped
    assert "exceed --budget-s 0" in results[".item() per param"]["skipped"]


def test_unknown_names_are_refused() -> None:
    with pytest.raises(SystemExit):
        peers.parse(["--models", "resnet9000"])


@pytest.mark.slow
def test_compile_counts_on_a_tiny_model() -> None:
    counts = peers.compile_counts(CASES["tiny_mlp"], steps=2)
    assert counts["unwatched"]["graphs"] >= 1 and counts["unwatched"]["frames_compiled"] >= 1
    for mode in ("default", "everything"):
        added = counts[f"added_by_{mode}"]
        assert set(added) == {"graphs", "frames_compiled", "graph_breaks"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the guard of a machine without CUDA")
def test_gpu_script_without_cuda_exits_with_a_message() -> None:
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--steps", "1"])
    assert "needs a CUDA device" in str(exc.value.code)


def _fake_sync_mode(monkeypatch: pytest.MonkeyPatch, at_mode: str) -> None:
    """Stand-in for CUDA's sync debug mode: turning ``at_mode`` on reports one sync."""

    def set_mode(mode: object) -> None:
        if mode == at_mode == "error":
            raise RuntimeError("called a synchronizing CUDA operation")
        if mode == at_mode == "warn":
            warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", set_mode)


def test_gpu_sync_check_bookkeeping_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES["tiny_mlp"]
    _fake_sync_mode(monkeypatch, "none")
    assert gpu.error_pass(case, None, steps=3, device="cpu") == "ok"
    assert gpu.warn_pass(case, None, steps=3, device="cpu") == {}
    _fake_sync_mode(monkeypatch, "error")
    verdict = gpu.error_pass(case, None, steps=3, device="cpu")
    assert verdict.startswith("sync at step 0: called a synchronizing")
    _fake_sync_mode(monkeypatch, "warn")
    found = gpu.warn_pass(case, None, steps=3, device="cpu")
    assert list(found.values()) == [[0, 1, 2]]  # one source line, every step
    assert "test_peers.py" in next(iter(found))


def test_readme_perf_table_is_the_committed_peers_run() -> None:
    """The README's table is generated from benchmarks/results_peers_cpu.json, never typed:
    re-rendering the committed run gives the README's block, and the run has the peers."""
    from benchmarks import readme_table

    root = Path(__file__).resolve().parents[2]
    result = json.loads((root / "benchmarks" / "results_peers_cpu.json").read_text())
    readme = (root / "README.md").read_text()
    block = readme[
        readme.index(readme_table.BEGIN) + len(readme_table.BEGIN) : readme.index(readme_table.END)
    ]
    assert block.strip() == readme_table.render(result).strip()
    watchers = set(next(iter(result["ratios"].values())))
    assert {"gradientflow default", "gradientflow everything", "wandb.watch"} <= watchers
