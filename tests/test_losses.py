"""The losses against an independent naive reference (scipy densities, direct formulas)."""

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from sketch_model.losses import kl_loss, mixture_nll, pen_nll, reconstruction_loss, split_params


def naive_mixture_nll(dx, dy, pi_logits, mu1, mu2, log_s1, log_s2, corr_raw):
    pi = np.exp(pi_logits - pi_logits.max())
    pi /= pi.sum()
    density = 0.0
    for k in range(len(pi)):
        s1, s2, rho = math.exp(log_s1[k]), math.exp(log_s2[k]), math.tanh(corr_raw[k])
        cov = [[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]]
        density += pi[k] * multivariate_normal(mean=[mu1[k], mu2[k]], cov=cov).pdf([dx, dy])
    return -math.log(density)


def random_raw(rng, shape, m):
    raw = rng.normal(size=shape + (3 + 6 * m,)).astype(np.float32)
    raw[..., 3 + 3 * m:3 + 5 * m] *= 0.5  # log sigmas in a range scipy handles well
    return raw


@pytest.mark.parametrize("seed", range(5))
def test_mixture_nll_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    m = 20
    raw = random_raw(rng, (7,), m)
    dx, dy = rng.normal(size=(2, 7)).astype(np.float32)
    got = np.asarray(mixture_nll(dx, dy, split_params(raw, m)))
    for i in range(7):
        p = [raw[i, 3 + k * m:3 + (k + 1) * m].astype(np.float64) for k in range(6)]
        want = naive_mixture_nll(float(dx[i]), float(dy[i]), *p)
        assert got[i] == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_pen_nll_matches_direct_cross_entropy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(9, 3)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=9)]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    want = -np.log((probs * targets).sum(axis=1))
    np.testing.assert_allclose(np.asarray(pen_nll(targets, logits)), want, rtol=1e-5)


def test_kl_matches_closed_form_per_dimension():
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(4, 6)).astype(np.float32)
    presig = rng.normal(size=(4, 6)).astype(np.float32)
    var = np.exp(presig.astype(np.float64))
    want = np.mean(0.5 * (var + mu ** 2 - 1.0 - np.log(var)))  # KL(N(mu, var) || N(0, 1))
    assert float(kl_loss(mu, presig)) == pytest.approx(want, rel=1e-5)


def test_reconstruction_loss_masks_and_normalises_by_n_max():
    rng = np.random.default_rng(3)
    m, n_max = 3, 50
    raw = random_raw(rng, (2, 6), m)
    target = np.zeros((2, 6, 5), np.float32)
    target[..., :2] = rng.normal(size=(2, 6, 2))
    target[..., 2] = 1.0
    lengths = np.array([4, 2])
    for b, n in enumerate(lengths):
        target[b, n:] = [0, 0, 0, 0, 1]
    stroke, pen_before_end, pen_padding = 0.0, 0.0, 0.0
    for b, n in enumerate(lengths):
        for t in range(6):
            p = [raw[b, t, 3 + k * m:3 + (k + 1) * m].astype(np.float64) for k in range(6)]
            logits = raw[b, t, :3].astype(np.float64)
            pen = -float((logits - np.log(np.exp(logits).sum())) @ target[b, t, 2:])
            if t < n:
                stroke += naive_mixture_nll(target[b, t, 0], target[b, t, 1], *p)
                pen_before_end += pen
            else:
                pen_padding += pen
    # training: the paper's L_p over every step, the end-of-sketch padding included
    got = float(reconstruction_loss(target, lengths, raw, m, n_max, pen_over_padding=True))
    assert got == pytest.approx((stroke + pen_before_end + pen_padding) / (2 * n_max), rel=1e-4)
    # evaluation: the reference masks L_p like L_s
    got = float(reconstruction_loss(target, lengths, raw, m, n_max, pen_over_padding=False))
    assert got == pytest.approx((stroke + pen_before_end) / (2 * n_max), rel=1e-4)


def test_extreme_inputs_give_finite_losses():
    m = 4
    raw = np.zeros((3, 3 + 6 * m), np.float32)
    raw[0, 3 + 3 * m:3 + 5 * m] = -80.0  # collapsed sigmas
    raw[1, 3 + 5 * m:] = 60.0  # correlation saturated at +1 in float32
    raw[2, 3:3 + m] = [500.0, -500.0, 0.0, 0.0]  # extreme mixture logits
    for dx in (0.0, 1e6, -1e6):
        nll = np.asarray(mixture_nll(np.full(3, dx, np.float32), np.full(3, dx, np.float32),
                                     split_params(raw, m)))
        assert np.all(np.isfinite(nll)), (dx, nll)
