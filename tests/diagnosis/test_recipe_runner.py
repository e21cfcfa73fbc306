"""recipe.py: checking recipes and training them under a watch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.recipe import Recipe, check_recipe, run_recipe


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.a(x) + self.b(y)))


def _data(n: int, as_dict: bool) -> list[tuple[Any, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out: list[tuple[Any, torch.Tensor]] = []
    for _ in range(n):
        x, y = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
        inputs: Any = {"x": x, "y": y} if as_dict else (x, y)
        out.append((inputs, (x - y).sum(1, keepdim=True)))
    return out


@pytest.mark.parametrize("as_dict", [False, True], ids=["tuple", "dict"])
def test_tuple_and_dict_inputs_and_default_optimizer(as_dict: bool) -> None:
    recipe = check_recipe(
        {"model": TwoInputs(), "batches": _data(12, as_dict), "loss_fn": nn.MSELoss()}
    )
    assert isinstance(recipe.optimizer, torch.optim.Adam)
    assert recipe.notes == ["the recipe has no optimizer: using Adam(lr=0.001)"]
    mon = run_recipe(recipe, 10, progress=False)
    assert mon.step_count == 10 and mon.trace.n_records == 10
    assert len(recipe.notes) == 1  # 10 of 12 batches used: nothing to note


def test_stops_after_nonfinite_losses() -> None:
    model = nn.Linear(3, 1)
    batches = [(torch.full((4, 3), float("nan")), torch.zeros(4, 1))] * 50
    recipe = check_recipe(
        {
            "model": model,
            "batches": batches,
            "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        }
    )
    mon = run_recipe(recipe, 40, progress=False)
    assert mon.step_count == 10
    assert recipe.notes[-1] == "stopped at step 10: the loss was NaN/Inf for 10 steps in a row"


def test_recurrent_models_get_a_through_time_probe() -> None:
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(1, 8, batch_first=True)
            self.head = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    batches = [(torch.randn(4, 15, 1), torch.randn(4, 1)) for _ in range(6)]
    mon = run_recipe(
        check_recipe({"model": Seq(), "batches": batches, "loss_fn": nn.MSELoss()}),
        6,
        progress=False,
    )
    assert any(key.startswith("bptt/rnn/") for key in mon.trace.extras)


def test_errors() -> None:
    with pytest.raises(GradientFlowError, match="the recipe's batches are empty"):
        run_recipe(
            check_recipe({"model": nn.Linear(2, 1), "batches": [], "loss_fn": nn.MSELoss()}),
            5,
            progress=False,
        )
    with pytest.raises(GradientFlowError, match=r"'optimizer' must be a torch\.optim\.Optimizer"):
        check_recipe(
            {"model": nn.Linear(2, 1), "batches": [], "loss_fn": nn.MSELoss(), "optimizer": "sgd"}
        )
    with pytest.raises(GradientFlowError, match=r"step 0: the recipe's model or loss_fn raised"):
        bad = [(torch.zeros(2, 5), torch.zeros(2, 1))]
        run_recipe(
            check_recipe({"model": nn.Linear(2, 1), "batches": bad, "loss_fn": nn.MSELoss()}),
            1,
            progress=False,
        )
    with pytest.raises(GradientFlowError, match="loss_fn must return a scalar tensor"):
        batches = [(torch.zeros(2, 2), torch.zeros(2, 1))]
        run_recipe(
            check_recipe({"model": nn.Linear(2, 1), "batches": batches, "loss_fn": lambda o, t: o}),
            1,
            progress=False,
        )


def _frozen() -> nn.Module:
    model = nn.Linear(2, 1)
    model.requires_grad_(False)
    return model


@pytest.mark.parametrize(
    ("model", "loss_fn", "match"),
    [
        (nn.ReLU(), nn.MSELoss(), r"mine\.py:r: the model \(ReLU\) has no trainable parameters"),
        (_frozen(), nn.MSELoss(), r"mine\.py:r: the model \(Linear\) has no trainable"),
        (
            nn.Linear(2, 1),
            lambda o, t: (o - t).detach().pow(2).mean(),
            r"mine\.py:r: step 0: the loss does not require grad",
        ),
        (
            nn.Linear(2, 1),
            nn.MSELoss(reduction="none"),
            r"mine\.py:r: step 0: loss_fn must return a scalar tensor, got a tensor of shape "
            r"\(4, 1\)",
        ),
    ],
    ids=["no-parameters", "frozen", "no-grad", "vector-loss"],
)
def test_bad_recipes_name_the_recipe_and_the_problem(
    model: nn.Module, loss_fn: Any, match: str
) -> None:
    batches = [(torch.zeros(4, 2), torch.zeros(4, 1))]
    with pytest.raises(GradientFlowError, match=match):
        recipe = check_recipe({"model": model, "batches": batches, "loss_fn": loss_fn}, "mine.py:r")
        run_recipe(recipe, 1, progress=False)


def test_unknown_keys_are_refused_with_the_known_ones() -> None:
    spec = {"model": nn.Linear(2, 1), "batches": [], "loss_fn": nn.MSELoss(), "epochs": 3}
    with pytest.raises(
        GradientFlowError,
        match=r"demo: unknown recipe key\(s\) 'epochs'; known: model, batches, loss_fn, "
        r"optimizer, scheduler, device, train_step, evaluate$",
    ):
        check_recipe(spec, "demo")


def test_a_recipe_dataclass_is_checked_too() -> None:
    with pytest.raises(GradientFlowError, match=r"'optimizer' must be a torch\.optim\.Optimizer"):
        Recipe(model=nn.Linear(2, 1), batches=[], loss_fn=nn.MSELoss(), optimizer="sgd")  # type: ignore[arg-type]
    recipe = check_recipe(Recipe(model=nn.Linear(2, 1), batches=[], loss_fn=nn.MSELoss()))
    assert isinstance(recipe.optimizer, torch.optim.Adam)
    with pytest.raises(GradientFlowError, match="run_recipe: expected a Recipe"):
        run_recipe({"model": nn.Linear(2, 1)}, 1, progress=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------- cycling, epochs, scheduler


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


def test_a_scheduler_is_stepped_once_per_optimizer_step() -> None:
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
    run_recipe(recipe, 6, progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert sched.last_epoch == 6


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
