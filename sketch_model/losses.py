"""The paper's losses in keras.ops: mixture-density L_s, pen L_p and the KL term.

All log-densities are computed in log space with log-sum-exp, so no step can produce NaN or
inf: log(sigma) and the correlation's pre-activation are clipped to ranges where float32 stays
finite (sigma in [e^-10, e^10], |rho| <= tanh(5) = 0.99991), which the reference leaves open.
"""

from __future__ import annotations

import math

from keras import ops

from .config import CORR_LIMIT, LOG_SIGMA_LIMIT

LOG_2PI = math.log(2.0 * math.pi)


def split_params(raw, num_mixture: int) -> dict:
    """Split the head's raw output (..., 3 + 6M) into named parts (the reference's layout:
    3 pen logits, then M each of mixture logits, mu_x, mu_y, log sigma_x, log sigma_y, corr)."""
    m = num_mixture
    names = ("logit_pi", "mu1", "mu2", "log_s1", "log_s2", "corr")
    parts = {name: raw[..., 3 + k * m: 3 + (k + 1) * m] for k, name in enumerate(names)}
    parts["pen_logits"] = raw[..., :3]
    parts["log_s1"] = ops.clip(parts["log_s1"], -LOG_SIGMA_LIMIT, LOG_SIGMA_LIMIT)
    parts["log_s2"] = ops.clip(parts["log_s2"], -LOG_SIGMA_LIMIT, LOG_SIGMA_LIMIT)
    parts["corr"] = ops.clip(parts["corr"], -CORR_LIMIT, CORR_LIMIT)
    return parts


def mixture_nll(dx, dy, parts: dict):
    """-log sum_j pi_j N(dx, dy | mu_j, sigma_j, rho_j) per step; dx, dy are (...)."""
    log_pi = ops.log_softmax(parts["logit_pi"], axis=-1)
    c = parts["corr"]
    rho = ops.tanh(c)
    # log(1 - tanh(c)^2) = 2 log 2 - 2|c| - 2 softplus(-2|c|), exact and stable
    log_one_minus_rho2 = 2.0 * (math.log(2.0) - ops.abs(c) - ops.softplus(-2.0 * ops.abs(c)))
    z1 = (ops.expand_dims(dx, -1) - parts["mu1"]) * ops.exp(-parts["log_s1"])
    z2 = (ops.expand_dims(dy, -1) - parts["mu2"]) * ops.exp(-parts["log_s2"])
    quad = (ops.square(z1) + ops.square(z2) - 2.0 * rho * z1 * z2) * ops.exp(-log_one_minus_rho2)
    log_normal = (-LOG_2PI - parts["log_s1"] - parts["log_s2"]
                  - 0.5 * log_one_minus_rho2 - 0.5 * quad)
    return -ops.logsumexp(log_pi + log_normal, axis=-1)


def pen_nll(pen_targets, pen_logits):
    """Cross-entropy of the 3-way pen state per step."""
    return -ops.sum(pen_targets * ops.log_softmax(pen_logits, axis=-1), axis=-1)


def reconstruction_sums(target, lengths, raw, num_mixture: int, pen_over_padding: bool):
    """Per-sketch sums of L_s and L_p over their counted steps.

    target: (B, T, 5) stroke-5 targets; lengths: (B,) points per sketch (the first
    end-of-sketch step is at index `length`). L_s counts the steps before the end. L_p counts
    every one of the T steps when pen_over_padding (training: the paper's L_p runs over all
    N_max steps, the padding after the end included), otherwise only the steps L_s counts
    (evaluation, as the reference masks it). Returns (stroke_sum, pen_sum), each (B,).
    """
    parts = split_params(raw, num_mixture)
    steps = ops.arange(ops.shape(target)[1])[None, :]
    stroke_mask = ops.cast(steps < ops.cast(lengths, "int32")[:, None], raw.dtype)
    l_s = mixture_nll(target[..., 0], target[..., 1], parts) * stroke_mask
    l_p = pen_nll(target[..., 2:], parts["pen_logits"])
    if not pen_over_padding:
        l_p = l_p * stroke_mask
    return ops.sum(l_s, axis=1), ops.sum(l_p, axis=1)


def reconstruction_loss(target, lengths, raw, num_mixture: int, n_max: int,
                        pen_over_padding: bool = True):
    """L_R = (L_s + L_p) summed over counted steps and divided by B * N_max, so a step weighs
    the same whether the batch is padded to its own length or to N_max."""
    stroke_sum, pen_sum = reconstruction_sums(target, lengths, raw, num_mixture, pen_over_padding)
    batch = ops.cast(ops.shape(target)[0], raw.dtype)
    return ops.sum(stroke_sum + pen_sum) / (batch * n_max)


def kl_loss(mu, presig):
    """KL(N(mu, exp(presig)) || N(0, I)) averaged over the batch and the latent dimensions."""
    return -0.5 * ops.mean(1.0 + presig - ops.square(mu) - ops.exp(presig))
