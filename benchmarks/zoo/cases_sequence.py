"""Sequence and generative cases: transformer encoders (pre-LN, post-LN), tiny BERT and GPT-2
from ``transformers`` configs, LSTM/GRU/RNN (the adding problem, digit rows), and a GAN.
"""

from __future__ import annotations

import copy
import math

import torch
from benchmarks.zoo import data, models
from benchmarks.zoo.case import (
    Fit,
    Run,
    accuracy,
    by_construction,
    case,
    failed_regression,
    healthy_classifier,
    healthy_regression,
    loss_drop,
    mse,
    train,
)
from torch import nn

import gradientflow

VOCAB, LENGTH = 16, 12  # majority task: [CLS] + 11 tokens


def _majority(seed: int) -> tuple[torch.Tensor, ...]:
    x, y = data.majority_tokens(4000, LENGTH - 1, VOCAB, seed=seed + 10)
    return x[800:], y[800:], x[:800], y[:800]


def _warmup(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / steps))


def _binary(fit: Fit, seed: int) -> Run:
    trace, losses = train(fit, seed)
    acc = accuracy(fit.model, fit.data[2], fit.data[3])
    return healthy_classifier(trace, losses, acc, 2)


def _adding(seed: int, length: int) -> tuple[torch.Tensor, ...]:
    x, y = data.adding_problem(6000, length, seed + 20)
    return x[1000:], y[1000:], x[:1000], y[:1000]


def _regress(fit: Fit, seed: int, healthy: bool) -> Run:
    trace, losses = train(fit, seed)
    test = mse(fit.model, fit.data[2], fit.data[3])
    if healthy:
        return healthy_regression(trace, losses, test, 1 / 6)
    return failed_regression(trace, losses, test, 1 / 6)


# ------------------------------------------------------------------------------ healthy
@case("transformer_preln_majority", "healthy", "transformer", "4-layer pre-LN encoder, Adam")
def _preln(seed: int) -> Run:
    m = models.EncoderClassifier(VOCAB, LENGTH, 32, 4, norm_first=True)
    return _binary(Fit(m, torch.optim.Adam(m.parameters(), 1e-3), _majority(seed), 200, 32), seed)


@case(
    "transformer_postln_warmup", "healthy", "transformer",
    "4-layer post-LN encoder (the original layout), Adam with linear warm-up",
)  # fmt: skip
def _postln(seed: int) -> Run:
    m = models.EncoderClassifier(VOCAB, LENGTH, 32, 4, norm_first=False)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    return _binary(Fit(m, opt, _majority(seed), 200, 32, sched=_warmup(opt, 30)), seed)


@case("bert_tiny_4", "healthy", "transformer", "BertForSequenceClassification, 4 layers, AdamW")
def _bert4(seed: int) -> Run:
    m = models.tiny_bert(VOCAB, 4, 32, LENGTH)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    return _binary(Fit(m, opt, _majority(seed), 150, 32, sched=_warmup(opt, 30)), seed)


@case(
    "bert_tiny_12", "healthy", "transformer",
    "post-LN BERT with 12 layers (hidden 32), AdamW with warm-up",
)  # fmt: skip
def _bert12(seed: int) -> Run:
    m = models.tiny_bert(VOCAB, 12, 32, LENGTH)
    opt = torch.optim.AdamW(m.parameters(), 5e-4)
    return _binary(Fit(m, opt, _majority(seed), 150, 32, sched=_warmup(opt, 30)), seed)


@case(
    "gpt2_tiny_progressions", "healthy", "transformer",
    "GPT2LMHeadModel (4 layers) learning arithmetic progressions (step 1 or 2) mod 16, AdamW",
)  # fmt: skip
def _gpt2(seed: int) -> Run:
    seqs = data.progressions(4000, 12, VOCAB, seed + 30)
    x, y = seqs[:, :-1], seqs[:, 1:]
    d = (x[800:], y[800:], x[:800], y[:800])
    m = models.tiny_gpt2(VOCAB, 4, 32, 12)

    def lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))

    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    trace, losses = train(Fit(m, opt, d, 300, 32, lm_loss, sched=_warmup(opt, 20)), seed)
    m.eval()
    with torch.no_grad():
        test = float(lm_loss(m(d[2]), d[3]))
    base = math.log(VOCAB)
    first, last = loss_drop(losses)
    ok = test <= 0.5 * base and last < first
    check = f"test loss {test:.3f} <= 0.5 x uniform baseline log(16) = {base:.3f}"
    return Run(trace, {"test_loss": test, "baseline_loss": base, "loss_first": first}, ok, check)


def _gated_adding(cell: str, seed: int) -> Run:
    """A gated cell (LSTM or GRU) learning the adding problem at T=30 with Adam."""
    m = models.Recurrent(cell, 2, 32, 1)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    return _regress(Fit(m, opt, _adding(seed, 30), 600, 64, nn.functional.mse_loss), seed, True)


@case("lstm_adding_30", "healthy", "rnn", "LSTM that learns the adding problem (T=30), Adam")
def _lstm_adding(seed: int) -> Run:
    return _gated_adding("lstm", seed)


@case("gru_adding_30", "healthy", "rnn", "GRU that learns the adding problem (T=30), Adam")
def _gru_adding(seed: int) -> Run:
    return _gated_adding("gru", seed)


def _rows() -> tuple[torch.Tensor, ...]:
    xtr, ytr, xte, yte = data.digits()
    return xtr.reshape(-1, 8, 8), ytr, xte.reshape(-1, 8, 8), yte


@case("rnn_tanh_digit_rows", "healthy", "rnn", "tanh RNN reading digits row by row, Adam")
def _rnn_rows(seed: int) -> Run:
    m = models.Recurrent("rnn", 8, 64, 10)
    trace, losses = train(Fit(m, torch.optim.Adam(m.parameters(), 3e-3), _rows(), 400, 64), seed)
    return healthy_classifier(trace, losses, accuracy(m, *_rows()[2:]), 10)


@case(
    "gru_digit_rows_clip_cosine", "healthy", "rnn",
    "GRU on digit rows, SGD+momentum, clip_grad_norm_(1.0), cosine schedule",
)  # fmt: skip
def _gru_rows(seed: int) -> Run:
    m = models.Recurrent("gru", 8, 64, 10)
    opt = torch.optim.SGD(m.parameters(), 0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 400)
    fit = Fit(m, opt, _rows(), 400, 64, sched=sched, clip=1.0)
    trace, losses = train(fit, seed)
    return healthy_classifier(trace, losses, accuracy(m, *_rows()[2:]), 10)


#: The GAN's outcome is judged on an exponential moving average of the generator's weights
#: (decay 0.99: about its last 100 of 600 steps), as GANs are evaluated in practice (Karras et
#: al. 2018, ProGAN; Yazici et al. 2019, "The unusual effectiveness of averaging in GAN
#: training"): alternating gradient steps orbit the equilibrium instead of settling on it
#: (Mescheder, Geiger & Nowozin 2018), so the last iterate is one point of the orbit; its
#: generated mean and spread swing around the data's from one step to the next.
GAN_STEPS, GAN_EMA = 600, 0.99
#: Healthy: the averaged generator's mean closes 75% of the initial gap to the data's, and its
#: spread is within 2x of the data's in each coordinate.
GAN_GAP, GAN_SPREAD = 0.25, 2.0


def _gan_stats(
    gen: nn.Module, real: torch.Tensor, noise: torch.Generator
) -> tuple[float, list[float]]:
    """The generated mean's distance to the data's, and the per-coordinate std ratios."""
    with torch.no_grad():
        fake = gen(torch.randn(5000, 4, generator=noise))
    return float((fake.mean(0) - real.mean(0)).norm()), (fake.std(0) / real.std(0)).tolist()


@case(
    "gan_2d_gaussian", "healthy", "gan",
    "GAN fitting a 2-D Gaussian; the discriminator is watched, declared with "
    "watch(..., role='discriminator') (its loss rises as G improves)",
)  # fmt: skip
def _gan(seed: int) -> Run:
    return gan_2d(seed)


def gan_2d(seed: int, watched: str = "discriminator") -> Run:
    """The zoo's GAN, watching its ``"discriminator"`` or its ``"generator"`` (declared as such
    with ``watch(..., role=watched)``)."""
    torch.manual_seed(seed)
    real = data.gaussian_2d(20000, seed + 40)
    noise = torch.Generator().manual_seed(seed + 41)  # evaluation samples: not the training's
    gen = models.mlp([4, 32, 32, 2], nn.ReLU)
    disc = models.mlp([2, 32, 32, 1], lambda: nn.LeakyReLU(0.2))
    averaged = copy.deepcopy(gen)  # the generator's EMA: evaluated, never trained
    opt_g = torch.optim.Adam(gen.parameters(), 1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), 1e-3, betas=(0.5, 0.999))
    bce = nn.functional.binary_cross_entropy_with_logits
    gap0, _ = _gan_stats(gen, real, noise)
    model, opt = (gen, opt_g) if watched == "generator" else (disc, opt_d)
    with gradientflow.watch(model, opt, role=watched) as mon:
        for _step in range(GAN_STEPS):
            xr = real[torch.randint(0, len(real), (128,))]
            xf = gen(torch.randn(128, 4))
            opt_d.zero_grad()
            ld = bce(disc(xr), torch.ones(128, 1)) + bce(disc(xf.detach()), torch.zeros(128, 1))
            ld.backward()
            if watched != "generator":
                mon.log(loss=ld)
            opt_d.step()
            opt_g.zero_grad()
            lg = bce(disc(xf), torch.ones(128, 1))
            lg.backward()
            if watched == "generator":
                mon.log(loss=lg)
            opt_g.step()
            with torch.no_grad():
                for avg, p in zip(averaged.parameters(), gen.parameters(), strict=True):
                    avg.lerp_(p, 1 - GAN_EMA)
    gap, ratio = _gan_stats(averaged, real, noise)
    last_gap, last_ratio = _gan_stats(gen, real, noise)
    ok = gap < GAN_GAP * gap0 and all(1 / GAN_SPREAD < r < GAN_SPREAD for r in ratio)
    check = (
        f"averaged generator: mean off by {gap:.3f} (< {GAN_GAP} x {gap0:.3f} at the start), "
        f"std ratios {ratio[0]:.2f}, {ratio[1]:.2f} (within {GAN_SPREAD:g}x); last iterate: "
        f"{last_gap:.3f}, {last_ratio[0]:.2f}, {last_ratio[1]:.2f}"
    )
    outcome = {
        "mean_gap": gap,
        "mean_gap_start": gap0,
        "std_ratio_x": ratio[0],
        "std_ratio_y": ratio[1],
        "last_mean_gap": last_gap,
    }
    return Run(mon.trace, outcome, ok, check)


# ------------------------------------------------------------------------------ pathological
@case(
    "vanishing_through_time_rnn_adding_100", "vanishing_through_time", "rnn",
    "tanh RNN (default init, recurrent gain ~0.6) on the adding problem with T=100",
)  # fmt: skip
def _vtt_rnn(seed: int) -> Run:
    m = models.Recurrent("rnn", 2, 32, 1)
    fit = Fit(
        m,
        torch.optim.Adam(m.parameters(), 1e-3),
        _adding(seed, 100),
        300,
        64,
        nn.functional.mse_loss,
    )
    return _regress(fit, seed, False)


@case(
    "vanishing_through_time_lstm_forget_bias", "vanishing_through_time", "rnn",
    "LSTM whose forget-gate bias is -6 (forget gate ~0.0025): the cell state forgets at once",
)  # fmt: skip
def _vtt_lstm(seed: int) -> Run:
    m = models.Recurrent("lstm", 2, 32, 1)
    with torch.no_grad():
        for b in (m.rnn.bias_ih_l0, m.rnn.bias_hh_l0):
            b[32:64] = -3.0
    fit = Fit(
        m,
        torch.optim.Adam(m.parameters(), 1e-3),
        _adding(seed, 50),
        300,
        64,
        nn.functional.mse_loss,
    )
    return _regress(fit, seed, False)


def _relu_rnn(gain: float, n_in: int, hidden: int, n_out: int) -> models.Recurrent:
    m = models.Recurrent("rnn", n_in, hidden, n_out, nonlinearity="relu")
    with torch.no_grad():
        m.rnn.weight_hh_l0.copy_(gain * torch.eye(hidden))
        m.rnn.bias_hh_l0.zero_()
    return m


@case(
    "exploding_through_time_relu_rnn", "exploding_through_time", "rnn",
    "ReLU RNN with recurrent matrix 1.15 I on the adding problem (T=40): the state and the "
    "gradient grow 1.15x a time step (Adam lr 1e-4 keeps the weights near their start)",
)  # fmt: skip
def _ett_adding(seed: int) -> Run:
    m = _relu_rnn(1.15, 2, 32, 1)
    opt = torch.optim.Adam(m.parameters(), 1e-4)
    trace, losses = train(Fit(m, opt, _adding(seed, 40), 200, 64, nn.functional.mse_loss), seed)
    return by_construction(trace, losses, "recurrent gain 1.15 per step over 40 steps")


@case(
    "exploding_through_time_irnn_mnist1d", "exploding_through_time", "rnn",
    "IRNN with recurrent matrix 1.15 I reading MNIST-1D one value at a time (T=40)",
)  # fmt: skip
def _ett_mnist1d(seed: int) -> Run:
    xtr, ytr, xte, yte = data.mnist1d()
    d = (xtr[..., None], ytr, xte[..., None], yte)
    m = _relu_rnn(1.15, 1, 64, 10)
    trace, losses = train(Fit(m, torch.optim.SGD(m.parameters(), 1e-6), d, 200, 100), seed)
    return by_construction(trace, losses, "recurrent gain 1.15 per step over 40 steps")


@case(
    "saturation_tanh_rnn_big_input", "saturation", "rnn",
    "tanh RNN on digit rows with input weights x20: the hidden state is pinned at +-1",
)  # fmt: skip
def _sat_rnn(seed: int) -> Run:
    m = models.Recurrent("rnn", 8, 64, 10)
    with torch.no_grad():
        m.rnn.weight_ih_l0.mul_(20.0)
    trace, losses = train(Fit(m, torch.optim.SGD(m.parameters(), 0.01), _rows(), 300, 64), seed)
    return by_construction(trace, losses, "|input pre-activation| ~ 20x the tanh range")
