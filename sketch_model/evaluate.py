"""Evaluation as the reference does it: L_R over the sketches' steps (the pen term masked at
and after the end of the sketch), L_KL floored at kl_tolerance per batch, both averaged."""

from __future__ import annotations

import numpy as np
from keras import ops

from .config import HParams
from .datasets import eval_batches
from .losses import kl_loss, reconstruction_sums
from .model import SketchRNN


def evaluate_losses(model: SketchRNN, sketches: list[np.ndarray], hps: HParams,
                    seed: int = 0) -> dict:
    """Losses of `model` on normalised stroke-3 `sketches`: {"loss", "L_R", "L_KL", "n"}.

    L_R sums each sketch's masked L_s + L_p and divides by n * N_max (N_max = max_seq_len),
    which is the reference's per-batch mean over padded steps. L_KL is max(KL, kl_tolerance) of
    each batch of batch_size sketches, averaged with the batches' sizes as weights; z is drawn
    with fixed noise so the figures are repeatable. loss = L_R + kl_weight * L_KL with the
    final KL weight.
    """
    rng = np.random.default_rng(seed)
    total_r, kl_sum, n = 0.0, 0.0, 0
    for strokes, lengths in eval_batches(sketches, hps.batch_size, hps.max_seq_len, hps.bucket_width):
        inputs = {"strokes": strokes, "lengths": lengths}
        if hps.conditional:
            inputs["eps"] = rng.standard_normal((len(lengths), hps.z_size)).astype(np.float32)
        out = model.predict_on_batch(inputs)
        stroke_sum, pen_sum = reconstruction_sums(strokes[:, 1:], lengths, out["params"],
                                                  hps.num_mixture, pen_through_end=False)
        total_r += float(ops.sum(stroke_sum + pen_sum))
        if hps.conditional:
            kl = float(kl_loss(out["mu"], out["presig"]))
            kl_sum += max(kl, hps.kl_tolerance) * len(lengths)
        n += len(lengths)
    if n == 0:
        return {"loss": float("nan"), "L_R": float("nan"), "L_KL": float("nan"), "n": 0}
    l_r = total_r / (n * hps.max_seq_len)
    l_kl = kl_sum / n
    return {"loss": l_r + hps.kl_weight * l_kl, "L_R": l_r, "L_KL": l_kl, "n": n}
