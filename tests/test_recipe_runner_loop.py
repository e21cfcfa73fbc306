"""recipe.py's loop: batches read again until the steps or epochs, the scheduler, the device
and a custom train_step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.recipe import Recipe, check_recipe, run_recipe
from gradientflow.trace import Trace


def _numbered(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batch i holds the value i everywhere (inputs 2x1, targets 2x1)."""
    return [(torch.full((2, 1), float(i)), torch.full((2, 1), float(i))) for i in range(n)]


def _seen(batches: Any, **kwargs: Any) -> tuple[list[int], Recipe]:
    """The batch numbers a run trained on, in order (read by a train_step)."""
    seen: list[int] = []

    def train_step(model: nn.Module, batch: Any) -> torch.Tensor:
        seen.append(int(batch[0][0, 0]))
        return nn.functional.mse_loss(model(batch[0]), batch[1])

    model = nn.Linear(1, 1)
    recipe = check_recipe(
        {
            "model": model,
            "batches": batches,
            "train_step": train_step,
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.01),
        }
    )
    run_recipe(recipe, progress=False, **kwargs)
    return seen, recipe


def test_a_list_is_cycled_until_the_steps() -> None:
    seen, recipe = _seen(_numbered(3), steps=8)
    assert seen == [0, 1, 2, 0, 1, 2, 0, 1]
    assert recipe.notes == []


def test_a_dataloader_is_cycled_and_epochs_count_passes() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(20.0)[:, None], torch.zeros(20, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)  # 8 + 8 + 4 per pass
    seen, recipe = _seen(loader, steps=7)
    assert seen == [0, 8, 16, 0, 8, 16, 0] and recipe.notes == []
    seen, recipe = _seen(loader, epochs=2)
    assert seen == [0, 8, 16] * 2 and recipe.notes == []
    seen, recipe = _seen(loader, steps=4, epochs=2)
    assert seen == [0, 8, 16, 0]
    assert recipe.notes == ["stopped at the step limit (4 steps) in epoch 2 of 2"]


def test_an_iterable_dataset_loader_without_len_trains_its_epochs() -> None:
    class Stream(torch.utils.data.IterableDataset[Any]):
        def __iter__(self) -> Any:
            return iter(_numbered(3))

    loader = torch.utils.data.DataLoader(Stream(), batch_size=None)
    seen, recipe = _seen(loader, epochs=2)
    assert seen == [0, 1, 2, 0, 1, 2] and recipe.notes == []


def test_a_one_shot_iterator_cannot_be_cycled_and_says_so() -> None:
    seen, recipe = _seen((b for b in _numbered(3)), steps=10)
    assert seen == [0, 1, 2]
    assert recipe.notes == [
        "the batches ran out after 3 steps (asked for 10 steps): they are a one-shot iterator "
        "(generator), which cannot be read again; return a list, a DataLoader or another "
        "re-iterable to train longer"
    ]
    seen, recipe = _seen(iter(_numbered(3)), epochs=1)
    assert seen == [0, 1, 2] and recipe.notes == []  # one epoch asked: nothing missing


def test_a_reiterable_that_empties_is_noted() -> None:
    class Once:
        def __init__(self) -> None:
            self.left = _numbered(2)

        def __iter__(self) -> Any:
            out, self.left = self.left, []
            return iter(out)

    seen, recipe = _seen(Once(), epochs=3)
    assert seen == [0, 1]
    assert recipe.notes == [
        "the batches ran out after 2 steps (asked for 3 epochs): pass 2 over them gave no batch"
    ]


def test_a_scheduler_is_stepped_once_per_optimizer_step_and_its_rate_kept(tmp_path: Path) -> None:
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    recipe = check_recipe(
        {
            "model": model,
            "batches": _numbered(4),
            "loss_fn": nn.MSELoss(),
            "optimizer": opt,
            "scheduler": sched,
        }
    )
    mon = run_recipe(recipe, 6, progress=False, log_dir=tmp_path / "run")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert sched.last_epoch == 6
    lrs = [[0, 0.1], [2, 0.05], [4, 0.025]]  # the rate each step used, where it changed
    assert mon.trace.meta["lr"] == lrs  # halving 0.1 is exact in binary
    assert Trace.load(tmp_path / "run").meta["lr"] == lrs  # kept on disk too


def test_reduce_on_plateau_gets_the_loss() -> None:
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    zero = [(torch.zeros(2, 1), torch.zeros(2, 1))]  # loss 0 at every step: no improvement
    recipe = Recipe(model, zero, nn.MSELoss(), opt, scheduler=sched)
    run_recipe(recipe, 4, progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)  # steps 2, 3, 4 reduce


def test_train_step_and_cycling_match_a_plain_loop() -> None:
    torch.manual_seed(0)
    data = [{"x": torch.randn(4, 3), "y": torch.randn(4, 1)} for _ in range(3)]
    reference = nn.Linear(3, 1)
    model = nn.Linear(3, 1)
    model.load_state_dict(reference.state_dict())
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for i in range(7):
        ref_opt.zero_grad()
        batch = data[i % 3]
        ((reference(batch["x"]) - batch["y"]) ** 2).mean().backward()
        ref_opt.step()

    def train_step(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((m(batch["x"]) - batch["y"]) ** 2).mean()

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mon = run_recipe(
        check_recipe({"model": model, "batches": data, "train_step": train_step, "optimizer": opt}),
        7,
        progress=False,
    )
    assert mon.step_count == 7
    torch.testing.assert_close(model.weight, reference.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.bias, reference.bias, rtol=0, atol=1e-6)


def test_scheduler_device_and_train_step_errors() -> None:
    base = {"model": nn.Linear(1, 1), "batches": _numbered(2)}
    with pytest.raises(GradientFlowError, match=r"r: 'scheduler' must have a step\(\) method"):
        check_recipe({**base, "loss_fn": nn.MSELoss(), "scheduler": 0.5}, "r")
    with pytest.raises(GradientFlowError, match=r"r: 'device' must be a torch device .* 'gpu0'"):
        check_recipe({**base, "loss_fn": nn.MSELoss(), "device": "gpu0"}, "r")
    with pytest.raises(GradientFlowError, match=r"r: 'train_step' must be callable"):
        check_recipe({**base, "train_step": "sgd"}, "r")
    with pytest.raises(GradientFlowError, match=r"r: the recipe has no 'loss_fn' key \(nor a"):
        check_recipe(base, "r")

    def boom(model: nn.Module, batch: Any) -> torch.Tensor:
        raise ValueError("boom")

    with pytest.raises(GradientFlowError, match=r"r: step 0: the recipe's train_step raised Va"):
        run_recipe(check_recipe({**base, "train_step": boom}, "r"), 1, progress=False)
    with pytest.raises(GradientFlowError, match=r"r: step 0: train_step must return a scalar"):
        run_recipe(check_recipe({**base, "train_step": lambda m, b: 1.0}, "r"), 1, progress=False)
    recipe = check_recipe({**base, "loss_fn": nn.MSELoss()}, "r")
    with pytest.raises(GradientFlowError, match="run_recipe: give steps, epochs or both"):
        run_recipe(recipe, progress=False)
    with pytest.raises(GradientFlowError, match=r"run_recipe: epochs must be an integer >= 1"):
        run_recipe(recipe, epochs=0, progress=False)


def test_device_cpu_is_honoured_and_a_missing_device_is_named() -> None:
    recipe = check_recipe(
        {
            "model": nn.Linear(1, 1),
            "batches": _numbered(2),
            "loss_fn": nn.MSELoss(),
            "device": "cpu",
        }
    )
    assert recipe.device == torch.device("cpu")
    assert run_recipe(recipe, 3, progress=False).step_count == 3
    if not torch.cuda.is_available():
        recipe.device = "cuda:0"
        with pytest.raises(GradientFlowError, match=r"cannot move the model to device 'cuda:0'"):
            run_recipe(recipe, 1, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cuda_moves_the_model_and_every_batch() -> None:
    model = nn.Linear(3, 1)
    seen: list[str] = []

    def train_step(m: nn.Module, batch: Any) -> torch.Tensor:
        seen.append(batch["x"].device.type)
        return nn.functional.mse_loss(m(batch["x"]), batch["y"])

    batches = [{"x": torch.randn(4, 3), "y": torch.randn(4, 1)} for _ in range(2)]
    recipe = check_recipe(
        {"model": model, "batches": batches, "train_step": train_step, "device": "cuda"}
    )
    mon = run_recipe(recipe, 5, progress=False)
    assert seen == ["cuda"] * 5 and model.weight.device.type == "cuda"
    assert mon.trace.n_records == 5 and np.isfinite(mon.trace.metrics["grad_norm"]).all()
