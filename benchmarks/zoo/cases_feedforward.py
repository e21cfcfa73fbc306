"""Healthy feed-forward cases: MLPs, CNNs (ResNet-18-style, VGG-style, 1-D), a frozen
fine-tune and regressions, each verified healthy by its outcome. The pathological ones are in
cases_faults.py."""

from __future__ import annotations

import math

import torch
from benchmarks.zoo import data, models
from benchmarks.zoo.case import (
    Fit,
    Run,
    accuracy,
    case,
    failed_classifier,
    failed_regression,
    healthy_classifier,
    healthy_regression,
    mse,
    train,
)
from torch import nn

from gradientflow import Schedule

SGD, Adam = torch.optim.SGD, torch.optim.Adam


def fit_classifier(fit: Fit, seed: int, healthy: bool, min_acc: float | None = None) -> Run:
    """Train a 10-class classifier; check it as healthy or as failed by its test accuracy."""
    trace, losses = train(fit, seed)
    acc = accuracy(fit.model, fit.data[2], fit.data[3])
    if healthy:
        return healthy_classifier(trace, losses, acc, 10, min_acc)
    return failed_classifier(trace, losses, acc, 10)


def fit_regression(fit: Fit, seed: int, healthy: bool) -> Run:
    """Train a regression; check its test MSE against predicting the mean."""
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
    return fit_classifier(Fit(m, Adam(m.parameters(), 1e-3), data.digits(), 300, 64), seed, True)


@case(
    "mlp_tanh_sgd_digits", "healthy", "mlp",
    "4-layer tanh MLP, Xavier init, SGD+momentum, recorded with Schedule.everything()",
)  # fmt: skip
def _mlp_tanh(seed: int) -> Run:
    m = models.mlp([64, 64, 64, 64, 10], nn.Tanh, nn.init.xavier_normal_)
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    fit = Fit(m, opt, data.digits(), 300, 64, schedule=Schedule.everything())
    return fit_classifier(fit, seed, True)


@case("mlp_steplr_mnist1d", "healthy", "mlp", "ReLU MLP on MNIST-1D, SGD+momentum, StepLR")
def _mlp_steplr(seed: int) -> Run:
    m = models.mlp([40, 256, 256, 10], nn.ReLU, models.he)
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 200, 0.3)
    fit = Fit(m, opt, data.mnist1d(), 500, 100, sched=sched)
    return fit_classifier(fit, seed, True, min_acc=0.4)


@case(
    "selu_lecun_20_digits", "healthy", "mlp",
    "20-layer SELU MLP with LeCun-normal init (self-normalising); batch 199 leaves a 4-sample "
    "last batch every epoch; trained until converged",
)  # fmt: skip
def _selu20(seed: int) -> Run:
    m = models.mlp([64] + [64] * 19 + [10], nn.SELU, models.lecun)
    opt = SGD(m.parameters(), 0.003, momentum=0.9)  # SCIENCE.md's lr for SELU-20 on digits
    return fit_classifier(Fit(m, opt, data.digits(), 400, 199), seed, True)


@case("mlp_bn_10_sgd_digits", "healthy", "mlp", "10-layer ReLU MLP with BatchNorm, SGD")
def _mlp_bn(seed: int) -> Run:
    m = models.mlp([64] + [64] * 9 + [10], nn.ReLU, models.he, norm="bn")
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    return fit_classifier(Fit(m, opt, data.digits(), 300, 64), seed, True)


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
    return fit_classifier(fit, seed, True, min_acc=0.4)


@case(
    "mlp_converged_digits", "healthy", "mlp",
    "small MLP trained far past convergence (training loss at its floor)",
)  # fmt: skip
def _mlp_converged(seed: int) -> Run:
    m = models.mlp([64, 64, 10], nn.ReLU, models.he)
    return fit_classifier(Fit(m, Adam(m.parameters(), 3e-3), data.digits(), 800, 128), seed, True)


@case(
    "resnet18_digits", "healthy", "cnn",
    "ResNet-18 layout (BN, He init, residual blocks), SGD+momentum, 80 steps on digit images",
)  # fmt: skip
def _resnet18(seed: int) -> Run:
    m = models.ResNet18(width=16)
    opt = SGD(m.parameters(), 0.05, momentum=0.9, weight_decay=5e-4)
    return fit_classifier(Fit(m, opt, data.digit_images(), 80, 64), seed, True)


@case("vgg_bn_digits", "healthy", "cnn", "VGG-style conv-BN-ReLU net, SGD+momentum")
def _vgg_bn(seed: int) -> Run:
    m = models.vgg(nn.ReLU, bn=True)
    opt = SGD(m.parameters(), 0.05, momentum=0.9)
    return fit_classifier(Fit(m, opt, data.digit_images(), 200, 64), seed, True)


@case("cnn1d_mnist1d", "healthy", "cnn", "1-D CNN on MNIST-1D, Adam")
def _cnn1d(seed: int) -> Run:
    m = models.cnn1d()
    fit = Fit(m, Adam(m.parameters(), 2e-3), data.mnist1d(), 500, 100)
    return fit_classifier(fit, seed, True, min_acc=0.5)


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
    return fit_classifier(Fit(m, opt, (xtr, ytr, xte, yte), 300, 64), seed, True)


@case(
    "regression_converged", "healthy", "regression",
    "MLP regression on a smooth function with noise, trained down to its noise floor",
)  # fmt: skip
def _reg_converged(seed: int) -> Run:
    m = models.mlp([8, 64, 64, 1], nn.Tanh)
    fit = Fit(
        m, Adam(m.parameters(), 3e-3), data.smooth_regression(), 800, 128, nn.functional.mse_loss
    )
    return fit_regression(fit, seed, True)


@case(
    "regression_clipped_sgd", "healthy", "regression",
    "ReLU MLP regression, SGD+momentum with clip_grad_norm_(1.0) before opt.step()",
)  # fmt: skip
def _reg_clip(seed: int) -> Run:
    m = models.mlp([8, 128, 128, 1], nn.ReLU, models.he)
    opt = SGD(m.parameters(), 0.02, momentum=0.9)
    fit = Fit(m, opt, data.smooth_regression(seed=1), 500, 64, nn.functional.mse_loss, clip=1.0)
    return fit_regression(fit, seed, True)
