"""The models the lab's experiments share, all seeded, all small enough for a CPU.

* :func:`mlp` — a plain MLP of any depth, activation and init, optionally with BatchNorm.
* :class:`ResidualMLP` — blocks of Linear–BN–ReLU, with or without the identity shortcut
  (the plain/residual pair of He et al. 2016).
* :func:`cnn1d` — the small CNN of the MNIST-1D paper (Greydanus 2020).
* :class:`SequenceRegressor` — an RNN/LSTM/GRU with a linear read-out of the last state.

Inits are named: ``"default"`` (PyTorch's U(±1/√fan_in), σ_w² = 1/3), ``"he"`` (N(0, 2/fan_in)),
``"lecun"`` (N(0, 1/fan_in)), ``"xavier"`` (U with Var = 2/(fan_in+fan_out)), ``"orthogonal"``,
or a number σ_w² for N(0, σ_w²/fan_in).

>>> net = mlp(64, 10, width=32, depth=4, activation="relu", init="he")
>>> [type(m).__name__ for m in net][:3]
['Linear', 'ReLU', 'Linear']
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.kinds import ACTIVATION_MODULES
from gradientflow.remedies.reinit import INITIALISERS

#: The library's activation names (``gradientflow.remedies``), plus "identity" (a linear net).
_ACTIVATIONS: dict[str, type[nn.Module]] = {**ACTIVATION_MODULES, "identity": nn.Identity}

Init = str | float


def make_activation(name: str | type[nn.Module]) -> nn.Module:
    """A fresh activation module by name (``"relu"``, ``"tanh"``, ``"selu"``, ...) or class.

    >>> make_activation("tanh"), make_activation(nn.SELU)
    (Tanh(), SELU())
    """
    if isinstance(name, type):
        if not issubclass(name, nn.Module):
            raise GradientFlowError(f"lab model: activation {name!r} is not an nn.Module class")
        return name()
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        known = ", ".join(_ACTIVATIONS)
        raise GradientFlowError(f"lab model: unknown activation {name!r}; known: {known}") from None


@torch.no_grad()
def init_linear(layer: nn.Linear | nn.Conv1d, init: Init, bias: float | None = None) -> None:
    """Re-initialise one layer's weight by scheme name or σ_w²; set the bias to ``bias``.

    >>> layer = nn.Linear(1000, 1000)
    >>> init_linear(layer, 2.0, bias=0.0)
    >>> round(float(layer.weight.detach().var() * 1000), 1)
    2.0
    """
    w = layer.weight
    fan_in = w[0].numel()
    if isinstance(init, int | float) and not isinstance(init, bool):
        nn.init.normal_(w, 0.0, math.sqrt(float(init) / fan_in))
    elif init == "default":
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(w, -bound, bound)
    elif init in INITIALISERS:  # he, lecun, xavier, orthogonal: the library's reinit schemes
        INITIALISERS[init](w)
    else:
        raise GradientFlowError(
            f"lab model: unknown init {init!r}; use default, he, lecun, xavier, orthogonal or σ_w²"
        )
    if bias is not None and layer.bias is not None:
        layer.bias.fill_(bias)


def mlp(
    n_in: int,
    n_out: int,
    *,
    width: int = 64,
    depth: int = 4,
    activation: str | type[nn.Module] = "relu",
    init: Init | None = "default",
    bias: float | None = None,
    batchnorm: bool = False,
    seed: int = 0,
) -> nn.Sequential:
    """``depth`` Linear layers (``depth - 1`` hidden layers of ``width``), seeded.

    With ``batchnorm`` each hidden Linear is followed by BatchNorm1d before the activation
    (Ioffe & Szegedy 2015). ``bias`` sets every hidden bias to a constant (``None`` keeps init).
    ``init="default"`` re-draws PyTorch's default distribution (the lab's runs); ``init=None``
    keeps the weights ``nn.Linear`` drew itself (the demo's model, :func:`gradientflow.demo.mlp`).

    >>> net = mlp(40, 10, depth=3, activation="sigmoid", batchnorm=True)
    >>> [type(m).__name__ for m in net]
    ['Linear', 'BatchNorm1d', 'Sigmoid', 'Linear', 'BatchNorm1d', 'Sigmoid', 'Linear']
    """
    if depth < 1 or width < 1:
        raise GradientFlowError(f"mlp: depth and width must be >= 1, got {depth}, {width}")
    make_activation(activation)  # validates the name
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    fan = n_in
    for _ in range(depth - 1):
        lin = nn.Linear(fan, width)
        if init is not None:
            init_linear(lin, init, bias)
        elif bias is not None:
            nn.init.constant_(lin.bias, bias)
        layers.append(lin)
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(make_activation(activation))
        fan = width
    out = nn.Linear(fan, n_out)
    if init is not None:
        init_linear(out, init, 0.0 if bias is not None else None)
    elif bias is not None:
        nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


class ResidualMLP(nn.Module):
    """An input layer, ``blocks`` blocks of two Linear–BN–ReLU layers, and a linear head.

    ``residual=True`` adds the identity shortcut around each block (He et al. 2016, Fig. 2);
    ``residual=False`` is the "plain" net of the same depth. He init throughout, BN in both;
    the residual blocks' last BN starts with γ = 0, so each block starts as the identity.

    >>> net = ResidualMLP(40, 10, width=16, blocks=3, residual=True)
    >>> net(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        width: int = 64,
        blocks: int = 4,
        residual: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.residual = residual
        self.stem = nn.Sequential(nn.Linear(n_in, width), nn.BatchNorm1d(width), nn.ReLU())
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            self.blocks.append(
                nn.Sequential(
                    nn.Linear(width, width),
                    nn.BatchNorm1d(width),
                    nn.ReLU(),
                    nn.Linear(width, width),
                    nn.BatchNorm1d(width),
                )
            )
        self.head = nn.Linear(width, n_out)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init_linear(m, "he", 0.0)
        if residual:  # "zero-γ" (Goyal et al. 2017): each block starts as the identity
            for block in self.blocks:
                last_norm = list(block.children())[-1]
                assert isinstance(last_norm, nn.BatchNorm1d)
                nn.init.zeros_(last_norm.weight)

    @property
    def depth(self) -> int:
        """Number of weight layers: stem + 2 per block + head."""
        return 2 + 2 * len(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = torch.relu(block(h) + h) if self.residual else torch.relu(block(h))
        return self.head(h)


def cnn1d(n_out: int = 10, channels: int = 25, seed: int = 0) -> nn.Sequential:
    """The MNIST-1D paper's CNN: three Conv1d(k=5, stride 2) + ReLU, then a linear layer.

    Input: (batch, 40) signals. He init.

    >>> cnn1d()(torch.zeros(3, 40)).shape
    torch.Size([3, 10])
    """
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, channels, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * 5, n_out),
    )
    for m in net:
        if isinstance(m, nn.Conv1d | nn.Linear):
            init_linear(m, "he", 0.0)
    return net


class SequenceRegressor(nn.Module):
    """``cell`` in {"rnn", "lstm", "gru"} over (batch, T, n_in) inputs, read out at the end.

    The LSTM's forget-gate bias starts at 1 (Gers et al. 2000), the usual practice.

    >>> net = SequenceRegressor("lstm", n_in=2, hidden=8)
    >>> net(torch.zeros(4, 10, 2)).shape
    torch.Size([4, 1])
    """

    def __init__(
        self, cell: str, *, n_in: int = 2, hidden: int = 64, n_out: int = 1, seed: int = 0
    ) -> None:
        super().__init__()
        kinds: dict[str, type[nn.RNN | nn.LSTM | nn.GRU]] = {
            "rnn": nn.RNN,
            "lstm": nn.LSTM,
            "gru": nn.GRU,
        }
        if cell not in kinds:
            raise GradientFlowError(
                f"SequenceRegressor: cell must be rnn, lstm or gru, got {cell!r}"
            )
        torch.manual_seed(seed)
        self.cell = cell
        self.rnn = kinds[cell](n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)
        if cell == "lstm":
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        p[hidden : 2 * hidden].fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])
