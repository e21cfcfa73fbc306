"""Feed-forward pathological cases (MLPs, CNNs, regressions), each with one primary kind by
construction and checked by outcome where the outcome shows it."""

from __future__ import annotations

import torch
from benchmarks.zoo import data, models
from benchmarks.zoo.case import Fit, Run, by_construction, case, train, went_nonfinite
from benchmarks.zoo.cases_feedforward import fit_classifier, fit_regression
from torch import nn

SGD, Adam = torch.optim.SGD, torch.optim.Adam


@case("vanishing_sigmoid_20", "vanishing", "mlp", "20-layer sigmoid MLP, default init, SGD")
def _van_sigmoid(seed: int) -> Run:
    m = models.mlp([64] + [64] * 19 + [10], nn.Sigmoid)
    return fit_classifier(Fit(m, SGD(m.parameters(), 0.1), data.digits(), 300, 64), seed, False)


@case(
    "vanishing_tanh_small_init", "vanishing", "mlp",
    "15-layer tanh MLP with weights N(0, 0.4^2/fan_in): each layer shrinks the gradient ~0.4x",
)  # fmt: skip
def _van_tanh(seed: int) -> Run:
    m = models.mlp([40] + [64] * 14 + [10], nn.Tanh, models.scaled_normal(0.4))
    return fit_classifier(Fit(m, SGD(m.parameters(), 0.1), data.mnist1d(), 300, 100), seed, False)


@case("vanishing_vgg_sigmoid", "vanishing", "cnn", "VGG-style net of 6 sigmoid convs, no BN")
def _van_vgg(seed: int) -> Run:
    m = models.vgg(nn.Sigmoid, bn=False, channels=(16, 16, 32, 32, 64, 64))
    fit = Fit(m, SGD(m.parameters(), 0.05, momentum=0.9), data.digit_images(), 200, 64)
    return fit_classifier(fit, seed, False)


@case(
    "exploding_relu_big_init", "exploding", "mlp",
    "12-layer ReLU MLP with weights N(0, 9/fan_in) (He is 2/fan_in): dL/ds grows ~2.1x a layer",
)  # fmt: skip
def _exp_relu(seed: int) -> Run:
    m = models.mlp([64] + [64] * 11 + [10], nn.ReLU, models.scaled_normal(3.0))
    trace, losses = train(Fit(m, SGD(m.parameters(), 1e-6), data.digits(), 200, 64), seed)
    return by_construction(trace, losses, "per-layer gradient gain sqrt(9/2) ~ 2.1 > 1")


@case(
    "exploding_vgg_big_init", "exploding", "cnn",
    "VGG-style ReLU net without BN, conv weights N(0, 9/fan_in): activations and dL/ds explode",
)  # fmt: skip
def _exp_vgg(seed: int) -> Run:
    m = models.vgg(nn.ReLU, bn=False, channels=(16, 16, 32, 32, 64, 64))
    for mod in m:
        if isinstance(mod, nn.Conv2d | nn.Linear):
            models.scaled_normal(3.0)(mod.weight)
    trace, losses = train(Fit(m, SGD(m.parameters(), 1e-7), data.digit_images(), 200, 64), seed)
    return by_construction(trace, losses, "per-layer gain sqrt(9/2) > 1 over 7 layers")


@case(
    "exploding_gd_unstable_lr", "exploding", "regression",
    "linear regression on diabetes, full-batch gradient descent with lr 0.28 above the "
    "stability limit 2/lambda_max(H) ~ 0.25: the error and the gradient grow ~1.2x a step",
)  # fmt: skip
def _exp_reg(seed: int) -> Run:
    m = nn.Sequential(nn.Linear(10, 1))
    fit = Fit(m, SGD(m.parameters(), 0.28), data.diabetes(), 60, 342, nn.functional.mse_loss)
    return fit_regression(fit, seed, False)


@case(
    "nonfinite_nan_from_start", "nonfinite", "mlp",
    "digits standardised per pixel without an epsilon: always-zero pixels give 0/0 = NaN inputs",
)  # fmt: skip
def _nan_start(seed: int) -> Run:
    xtr, ytr, xte, yte = data.digits()
    mu, sd = xtr.mean(0), xtr.std(0)
    d = ((xtr - mu) / sd, ytr, (xte - mu) / sd, yte)
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    return went_nonfinite(*train(Fit(m, Adam(m.parameters(), 1e-3), d, 100, 64), seed))


@case(
    "nonfinite_one_nan_sample", "nonfinite", "mlp",
    "one training sample holds a NaN pixel (a corrupt record): the first batch that draws it "
    "makes the weights NaN",
)  # fmt: skip
def _nan_sample(seed: int) -> Run:
    xtr, ytr, xte, yte = data.digits()
    xtr = xtr.clone()
    xtr[700, 20] = float("nan")
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    fit = Fit(m, Adam(m.parameters(), 1e-3), (xtr, ytr, xte, yte), 200, 64)
    return went_nonfinite(*train(fit, seed))


@case(
    "nonfinite_diverging_regression", "nonfinite", "regression",
    "two-layer linear net on diabetes with SGD lr 3: each step overshoots more, until inf/NaN",
)  # fmt: skip
def _nan_lr(seed: int) -> Run:
    m = models.mlp([10, 32, 1], nn.Identity)
    fit = Fit(m, SGD(m.parameters(), 3.0), data.diabetes(), 150, 32, nn.functional.mse_loss)
    return went_nonfinite(*train(fit, seed))


@case(
    "dead_relu_negative_bias", "dead_units", "mlp",
    "4-layer ReLU MLP with every bias set to -3: the units never fire",
)  # fmt: skip
def _dead_mlp(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 128, 10], nn.ReLU, models.he, bias=-3.0)
    return fit_classifier(Fit(m, Adam(m.parameters(), 1e-3), data.digits(), 300, 64), seed, False)


@case("dead_relu_vgg_bias", "dead_units", "cnn", "VGG-style ReLU net, conv biases set to -4")
def _dead_vgg(seed: int) -> Run:
    m = models.vgg(nn.ReLU, bn=False)
    for mod in m:
        if isinstance(mod, nn.Conv2d) and mod.bias is not None:
            nn.init.constant_(mod.bias, -4.0)
    fit = Fit(m, SGD(m.parameters(), 0.05, momentum=0.9), data.digit_images(), 200, 64)
    return fit_classifier(fit, seed, False)


@case(
    "saturation_sigmoid_bias", "saturation", "mlp",
    "sigmoid MLP whose biases are all +8: every unit sits at ~0.9997, its slope ~3e-4",
)  # fmt: skip
def _sat_sigmoid(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 10], nn.Sigmoid, nn.init.xavier_normal_, bias=8.0)
    return fit_classifier(Fit(m, SGD(m.parameters(), 0.1), data.digits(), 300, 64), seed, False)


@case(
    "saturation_tanh_big_init", "saturation", "mlp",
    "tanh MLP on MNIST-1D with weights N(0, 36/fan_in): units pinned at +-1",
)  # fmt: skip
def _sat_tanh(seed: int) -> Run:
    m = models.mlp([40, 128, 128, 128, 10], nn.Tanh, models.scaled_normal(6.0))
    fit = Fit(m, SGD(m.parameters(), 0.05), data.mnist1d(), 300, 100)
    return fit_classifier(fit, seed, False)


@case(
    "weights_to_zero_weight_decay", "weights_to_zero", "mlp",
    "ReLU MLP with SGD weight_decay=0.5 (a typo for 5e-4): weights shrink 5% a step",
)  # fmt: skip
def _wz_mlp(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    opt = SGD(m.parameters(), 0.1, weight_decay=0.5)
    return fit_classifier(Fit(m, opt, data.digits(), 300, 64), seed, False)


@case("weights_to_zero_vgg_decay", "weights_to_zero", "cnn", "VGG-style net, SGD weight_decay=1")
def _wz_vgg(seed: int) -> Run:
    m = models.vgg(nn.ReLU, bn=False)
    opt = SGD(m.parameters(), 0.05, momentum=0.9, weight_decay=1.0)
    return fit_classifier(Fit(m, opt, data.digit_images(), 200, 64), seed, False)


@case("stagnation_tiny_lr", "stagnation", "mlp", "ReLU MLP with Adam lr 1e-7: nothing moves")
def _stag_lr(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    return fit_classifier(Fit(m, Adam(m.parameters(), 1e-7), data.digits(), 300, 64), seed, False)


@case(
    "stagnation_random_labels", "stagnation", "mlp",
    "labels drawn afresh at random for every batch: there is nothing to learn",
)  # fmt: skip
def _stag_random(seed: int) -> Run:
    xtr, ytr, xte, yte = data.digits()
    g = torch.Generator().manual_seed(seed + 1)
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        noise = torch.randint(0, 10, y.shape, generator=g)
        return nn.functional.cross_entropy(out, noise)

    fit = Fit(m, Adam(m.parameters(), 1e-3), (xtr, ytr, xte, yte), 300, 64, loss_fn)
    return fit_classifier(fit, seed, False)


@case(
    "stagnation_sgd_tiny_lr_regression", "stagnation", "regression",
    "regression with SGD lr 1e-6: the loss stays at its start",
)  # fmt: skip
def _stag_reg(seed: int) -> Run:
    m = models.mlp([10, 64, 64, 1], nn.ReLU, models.he)
    fit = Fit(m, SGD(m.parameters(), 1e-6), data.diabetes(), 300, 32, nn.functional.mse_loss)
    return fit_regression(fit, seed, False)
