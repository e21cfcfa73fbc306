"""Feed-forward cases: MLPs, CNNs (ResNet-18-style, VGG-style, 1-D), a frozen fine-tune and
regressions, healthy and pathological. Each is labeled by construction and checked by outcome.
"""

from __future__ import annotations

import math

import torch
from benchmarks.zoo import data, models
from benchmarks.zoo.case import (
    Fit,
    Run,
    accuracy,
    by_construction,
    case,
    failed_classifier,
    failed_regression,
    healthy_classifier,
    healthy_regression,
    mse,
    train,
    went_nonfinite,
)
from torch import nn

from gradientflow import Schedule

SGD, Adam = torch.optim.SGD, torch.optim.Adam


def _classify(fit: Fit, seed: int, healthy: bool, min_acc: float | None = None) -> Run:
    trace, losses = train(fit, seed)
    acc = accuracy(fit.model, fit.data[2], fit.data[3])
    if healthy:
        return healthy_classifier(trace, losses, acc, 10, min_acc)
    return failed_classifier(trace, losses, acc, 10)


def _regress(fit: Fit, seed: int, healthy: bool) -> Run:
    trace, losses = train(fit, seed)
    test = mse(fit.model, fit.data[2], fit.data[3])
    base = float(fit.data[3].var(unbiased=False))
    if healthy:
        return healthy_regression(trace, losses, test, base)
    return failed_regression(trace, losses, test, base)


# ------------------------------------------------------------------------------ healthy
@case("mlp_relu_adam_digits", "healthy", "mlp", "3-layer ReLU MLP, He init, Adam, on digits")
def _mlp_relu(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    return _classify(Fit(m, Adam(m.parameters(), 1e-3), data.digits(), 300, 64), seed, True)


@case(
    "mlp_tanh_sgd_digits", "healthy", "mlp",
    "4-layer tanh MLP, Xavier init, SGD+momentum, recorded with Schedule.everything()",
)  # fmt: skip
def _mlp_tanh(seed: int) -> Run:
    m = models.mlp([64, 64, 64, 64, 10], nn.Tanh, nn.init.xavier_normal_)
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    fit = Fit(m, opt, data.digits(), 300, 64, schedule=Schedule.everything())
    return _classify(fit, seed, True)


@case("mlp_steplr_mnist1d", "healthy", "mlp", "ReLU MLP on MNIST-1D, SGD+momentum, StepLR")
def _mlp_steplr(seed: int) -> Run:
    m = models.mlp([40, 256, 256, 10], nn.ReLU, models.he)
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 200, 0.3)
    fit = Fit(m, opt, data.mnist1d(), 500, 100, sched=sched)
    return _classify(fit, seed, True, min_acc=0.4)


@case(
    "selu_lecun_20_digits", "healthy", "mlp",
    "20-layer SELU MLP with LeCun-normal init (self-normalising); batch 199 leaves a 4-sample "
    "last batch every epoch; trained until converged",
)  # fmt: skip
def _selu20(seed: int) -> Run:
    m = models.mlp([64] + [64] * 19 + [10], nn.SELU, models.lecun)
    opt = SGD(m.parameters(), 0.01, momentum=0.9)
    return _classify(Fit(m, opt, data.digits(), 400, 199), seed, True)


@case("mlp_bn_10_sgd_digits", "healthy", "mlp", "10-layer ReLU MLP with BatchNorm, SGD")
def _mlp_bn(seed: int) -> Run:
    m = models.mlp([64] + [64] * 9 + [10], nn.ReLU, models.he, norm="bn")
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    return _classify(Fit(m, opt, data.digits(), 300, 64), seed, True)


@case(
    "mlp_gelu_ln_adamw_cosine", "healthy", "mlp",
    "LayerNorm + GELU MLP on MNIST-1D, AdamW, linear warm-up then cosine decay",
)  # fmt: skip
def _mlp_cosine(seed: int) -> Run:
    m = models.mlp([40, 256, 256, 256, 10], nn.GELU, norm="ln")
    opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=0.01)
    steps = 500

    def lr(k: int) -> float:
        return min(1.0, (k + 1) / 25) * 0.5 * (1 + math.cos(math.pi * k / steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr)
    fit = Fit(m, opt, data.mnist1d(), steps, 100, sched=sched)
    return _classify(fit, seed, True, min_acc=0.4)


@case(
    "mlp_converged_digits", "healthy", "mlp",
    "small MLP trained far past convergence (training loss at its floor)",
)  # fmt: skip
def _mlp_converged(seed: int) -> Run:
    m = models.mlp([64, 64, 10], nn.ReLU, models.he)
    return _classify(Fit(m, Adam(m.parameters(), 3e-3), data.digits(), 800, 128), seed, True)


@case(
    "resnet18_digits", "healthy", "cnn",
    "ResNet-18 layout (BN, He init, residual blocks), SGD+momentum, 80 steps on digit images",
)  # fmt: skip
def _resnet18(seed: int) -> Run:
    m = models.ResNet18(width=16)
    opt = SGD(m.parameters(), 0.05, momentum=0.9, weight_decay=5e-4)
    return _classify(Fit(m, opt, data.digit_images(), 80, 64), seed, True)


@case("vgg_bn_digits", "healthy", "cnn", "VGG-style conv-BN-ReLU net, SGD+momentum")
def _vgg_bn(seed: int) -> Run:
    m = models.vgg(nn.ReLU, bn=True)
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    return _classify(Fit(m, opt, data.digit_images(), 200, 64), seed, True)


@case("cnn1d_mnist1d", "healthy", "cnn", "1-D CNN on MNIST-1D, Adam")
def _cnn1d(seed: int) -> Run:
    m = models.cnn1d()
    fit = Fit(m, Adam(m.parameters(), 2e-3), data.mnist1d(), 500, 100)
    return _classify(fit, seed, True, min_acc=0.5)


@case(
    "finetune_frozen_body", "healthy", "finetune",
    "MLP pre-trained on digits 0-4 (unwatched), then its body frozen and a new head "
    "fine-tuned on all ten digits",
)  # fmt: skip
def _finetune(seed: int) -> Run:
    xtr, ytr, xte, yte = data.digits()
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    pre = Adam(m.parameters(), 1e-3)
    keep = ytr < 5
    for idx in torch.randperm(int(keep.sum())).split(64) * 3:
        pre.zero_grad()
        nn.functional.cross_entropy(m(xtr[keep][idx]), ytr[keep][idx]).backward()
        pre.step()
    for p in m[:4].parameters():
        p.requires_grad_(False)
    head = m[4]
    assert isinstance(head, nn.Linear)
    head.reset_parameters()
    opt = Adam(head.parameters(), 3e-3)
    return _classify(Fit(m, opt, (xtr, ytr, xte, yte), 300, 64), seed, True)


@case(
    "regression_converged", "healthy", "regression",
    "MLP regression on a smooth function with noise, trained down to its noise floor",
)  # fmt: skip
def _reg_converged(seed: int) -> Run:
    m = models.mlp([8, 64, 64, 1], nn.Tanh)
    fit = Fit(
        m, Adam(m.parameters(), 3e-3), data.smooth_regression(), 800, 128, nn.functional.mse_loss
    )
    return _regress(fit, seed, True)


@case(
    "regression_clipped_sgd", "healthy", "regression",
    "ReLU MLP regression, SGD+momentum with clip_grad_norm_(1.0) before opt.step()",
)  # fmt: skip
def _reg_clip(seed: int) -> Run:
    m = models.mlp([8, 128, 128, 1], nn.ReLU, models.he)
    opt = SGD(m.parameters(), 0.02, momentum=0.9)
    fit = Fit(m, opt, data.smooth_regression(seed=1), 500, 64, nn.functional.mse_loss, clip=1.0)
    return _regress(fit, seed, True)


# ------------------------------------------------------------------------------ pathological
@case("vanishing_sigmoid_20", "vanishing", "mlp", "20-layer sigmoid MLP, default init, SGD")
def _van_sigmoid(seed: int) -> Run:
    m = models.mlp([64] + [64] * 19 + [10], nn.Sigmoid)
    return _classify(Fit(m, SGD(m.parameters(), 0.1), data.digits(), 300, 64), seed, False)


@case(
    "vanishing_tanh_small_init", "vanishing", "mlp",
    "15-layer tanh MLP with weights N(0, 0.4^2/fan_in): each layer shrinks the gradient ~0.4x",
)  # fmt: skip
def _van_tanh(seed: int) -> Run:
    m = models.mlp([40] + [64] * 14 + [10], nn.Tanh, models.scaled_normal(0.4))
    return _classify(Fit(m, SGD(m.parameters(), 0.1), data.mnist1d(), 300, 100), seed, False)


@case("vanishing_vgg_sigmoid", "vanishing", "cnn", "VGG-style net of 6 sigmoid convs, no BN")
def _van_vgg(seed: int) -> Run:
    m = models.vgg(nn.Sigmoid, bn=False, channels=(16, 16, 32, 32, 64, 64))
    fit = Fit(m, SGD(m.parameters(), 0.05, momentum=0.9), data.digit_images(), 200, 64)
    return _classify(fit, seed, False)


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
    return _regress(fit, seed, False)


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
    return _classify(Fit(m, Adam(m.parameters(), 1e-3), data.digits(), 300, 64), seed, False)


@case("dead_relu_vgg_bias", "dead_units", "cnn", "VGG-style ReLU net, conv biases set to -4")
def _dead_vgg(seed: int) -> Run:
    m = models.vgg(nn.ReLU, bn=False)
    for mod in m:
        if isinstance(mod, nn.Conv2d) and mod.bias is not None:
            nn.init.constant_(mod.bias, -4.0)
    fit = Fit(m, SGD(m.parameters(), 0.05, momentum=0.9), data.digit_images(), 200, 64)
    return _classify(fit, seed, False)


@case(
    "saturation_sigmoid_bias", "saturation", "mlp",
    "sigmoid MLP whose biases are all +8: every unit sits at ~0.9997, its slope ~3e-4",
)  # fmt: skip
def _sat_sigmoid(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 10], nn.Sigmoid, nn.init.xavier_normal_, bias=8.0)
    return _classify(Fit(m, SGD(m.parameters(), 0.1), data.digits(), 300, 64), seed, False)


@case(
    "saturation_tanh_big_init", "saturation", "mlp",
    "tanh MLP on MNIST-1D with weights N(0, 36/fan_in): units pinned at +-1",
)  # fmt: skip
def _sat_tanh(seed: int) -> Run:
    m = models.mlp([40, 128, 128, 128, 10], nn.Tanh, models.scaled_normal(6.0))
    fit = Fit(m, SGD(m.parameters(), 0.05), data.mnist1d(), 300, 100)
    return _classify(fit, seed, False)


@case(
    "weights_to_zero_weight_decay", "weights_to_zero", "mlp",
    "ReLU MLP with SGD weight_decay=0.5 (a typo for 5e-4): weights shrink 5% a step",
)  # fmt: skip
def _wz_mlp(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    opt = SGD(m.parameters(), 0.1, weight_decay=0.5)
    return _classify(Fit(m, opt, data.digits(), 300, 64), seed, False)


@case("weights_to_zero_vgg_decay", "weights_to_zero", "cnn", "VGG-style net, SGD weight_decay=1")
def _wz_vgg(seed: int) -> Run:
    m = models.vgg(nn.ReLU, bn=False)
    opt = SGD(m.parameters(), 0.05, momentum=0.9, weight_decay=1.0)
    return _classify(Fit(m, opt, data.digit_images(), 200, 64), seed, False)


@case("stagnation_tiny_lr", "stagnation", "mlp", "ReLU MLP with Adam lr 1e-7: nothing moves")
def _stag_lr(seed: int) -> Run:
    m = models.mlp([64, 128, 128, 10], nn.ReLU, models.he)
    return _classify(Fit(m, Adam(m.parameters(), 1e-7), data.digits(), 300, 64), seed, False)


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
    return _classify(fit, seed, False)


@case(
    "stagnation_sgd_tiny_lr_regression", "stagnation", "regression",
    "regression with SGD lr 1e-6: the loss stays at its start",
)  # fmt: skip
def _stag_reg(seed: int) -> Run:
    m = models.mlp([10, 64, 64, 1], nn.ReLU, models.he)
    fit = Fit(m, SGD(m.parameters(), 1e-6), data.diabetes(), 300, 32, nn.functional.mse_loss)
    return _regress(fit, seed, False)
