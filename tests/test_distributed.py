"""DDP and FSDP2 on two CPU processes (gloo): the recorded per-layer gradient norms are the
full, all-reduced ones at every step, only rank 0 writes the run directory by default.

One ``torchrun --standalone --nproc_per_node=2`` launch runs tests/dist_train.py (DDP, DDP with
``ranks="all"``, FSDP2); the one-process reference runs here on the same global batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch.distributed as dist

from gradientflow.trace import Trace
from tests import dist_train

HERE = Path(__file__).parent
RTOL = 1e-5


def _launch(out: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, str(HERE), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(HERE / "dist_train.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    out = tmp_path_factory.mktemp("dist")
    _launch(out)
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return dist_train.train("none", None)


def _close(a: Any, b: Any) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=0))


@pytest.mark.parametrize("run", ["ddp", "ddp_all", "fsdp"])
def test_recorded_norms_are_the_full_gradients_at_every_step(
    runs: tuple[Path, list[dict[str, Any]]], reference: dict[str, Any], run: str
) -> None:
    for rank in (0, 1):
        res = runs[1][rank][run]
        assert res["recording_error"] is None
        assert res["names"] == ["0", "2", "4"]  # no "module." prefix
        assert res["steps"] == list(range(dist_train.STEPS))
        recorded = np.asarray(res["recorded"])
        assert recorded.shape == (dist_train.STEPS, 3)
        assert _close(recorded, res["expected"])  # (a) p.grad in the loop, same point
        assert _close(recorded, reference["recorded"])  # (b) one process, whole batches
        assert _close(reference["recorded"], reference["expected"])
        # not shifted by a step: consecutive steps differ by far more than the tolerance
        assert not _close(recorded[1:], np.asarray(res["expected"])[:-1])
        for col in ("weight_norm", "update_norm"):
            assert _close(res[col], reference[col]), col


def test_ddp_only_rank0_writes_by_default(runs: tuple[Path, list[dict[str, Any]]]) -> None:
    out = runs[0]
    assert sorted(p.name for p in (out / "ddp").iterdir() if p.name.startswith("rank")) == []
    trace = Trace.load(out / "ddp")
    assert trace.steps.tolist() == list(range(dist_train.STEPS))  # one writer, no interleaving
    assert trace.meta["rank"] == 0 and trace.meta["world_size"] == 2
    assert _close(trace.metrics["grad_norm"], runs[1][0]["ddp"]["recorded"])


def test_ranks_all_writes_one_folder_per_rank(runs: tuple[Path, list[dict[str, Any]]]) -> None:
    out = runs[0] / "ddp_all"
    assert sorted(p.name for p in out.iterdir()) == ["rank0", "rank1"]
    for rank in (0, 1):
        trace = Trace.load(out / f"rank{rank}")
        assert trace.meta["rank"] == rank
        assert _close(trace.metrics["grad_norm"], runs[1][rank]["ddp_all"]["recorded"])


def test_fsdp2_run_directory_has_meta_and_every_step(
    runs: tuple[Path, list[dict[str, Any]]], reference: dict[str, Any]
) -> None:
    out = runs[0] / "fsdp"
    assert (out / "meta.json").is_file()
    trace = Trace.load(out)
    assert trace.steps.tolist() == list(range(dist_train.STEPS))
    assert [layer.name for layer in trace.layers] == ["0", "2", "4"]
    assert _close(trace.metrics["grad_norm"], reference["recorded"])
