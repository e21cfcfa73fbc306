"""recipe.py: checking recipes and training them under a watch."""

from __future__ import annotations

from typing import Any

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
