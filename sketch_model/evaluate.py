"""Evaluation as the reference does it: L_R over the sketches' steps (the pen term masked at
and after the end of the sketch), L_KL floored at kl_tolerance per batch, both averaged."""

from __future__ import annotations

import numpy as np
from keras import ops

from .config import HParams
from .datasets import SPLITS, eval_batches, load_dataset, normalize
from .losses import kl_loss, reconstruction_sums, split_params
from .model import SketchRNN
from .strokes import rescale


def drawings_at_model_size(sketcher, paths: list, split: str) -> tuple[list[np.ndarray], float]:
    """The drawings of `split` ("all": every split) of data files, brought to the size of
    drawing the model expects (Google's models draw larger than ours), and the factor used."""
    splits = SPLITS if split == "all" else (split,)
    data = load_dataset(paths, sketcher.hps.max_seq_len, splits=splits)
    drawings = [d for name in splits for d in getattr(data, name)]
    scale = sketcher.data_scale(drawings)
    return [rescale(d, scale) for d in drawings], scale


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
                                                  hps.num_mixture, pen_over_padding=False)
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


def pen_at_events(model: SketchRNN, sketches: list[np.ndarray], hps: HParams) -> dict:
    """Teacher-forced pen probabilities of `model` where normalised stroke-3 `sketches` lift the
    pen (every row with pen 1, the last one included) and where they end (the step after their
    last point, for those shorter than max_seq_len); a VAE decodes from z = mu.

    Returns {"lift_probability_median", "lift_likeliest_rate", "end_probability_median",
    "end_likeliest_rate"}: the median probability the model gives the true event, and the share
    of events where it is the likeliest of the three pen states. Sampling the pen at the paper's
    temperature tau raises each probability to the power 1/tau before normalising, so an event
    that is not the likeliest state becomes rare at low temperatures (the library's default
    pen_temperature of 1 samples it at these probabilities).
    """
    found = {name: ([np.zeros(0)], [np.zeros(0, bool)]) for name in ("lift", "end")}
    for strokes, lengths in eval_batches(sketches, hps.batch_size, hps.max_seq_len, hps.bucket_width):
        z = model.encode(strokes[:, 1:], lengths)[0] if hps.conditional else None
        raw, _ = model.decode(strokes[:, :-1], z, model.initial_state(z, len(lengths)))
        pen_logits = split_params(raw, hps.num_mixture)["pen_logits"]
        probs = ops.convert_to_numpy(ops.softmax(pen_logits, axis=-1))
        steps = np.arange(probs.shape[1])[None, :]
        events = {"lift": (strokes[:, 1:, 3] == 1) & (steps < lengths[:, None]),
                  "end": steps == lengths[:, None]}
        for (name, mask), column in zip(events.items(), (1, 2)):
            found[name][0].append(probs[mask][:, column])
            found[name][1].append(probs[mask].argmax(axis=-1) == column)
    report = {}
    for name, (p, likeliest) in found.items():
        p, likeliest = np.concatenate(p), np.concatenate(likeliest)
        report[f"{name}_probability_median"] = float(np.median(p)) if len(p) else float("nan")
        report[f"{name}_likeliest_rate"] = float(np.mean(likeliest)) if len(p) else float("nan")
    return report


def normalised_points(sketch: np.ndarray) -> np.ndarray:
    """A drawing's absolute points, centred on their bounding box and scaled to unit size."""
    points = np.cumsum(np.asarray(sketch, np.float64)[:, 0:2], axis=0)
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - (low + high) / 2) / max(float((high - low).max()), 1e-9)


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance between two point sets: the mean distance from each point
    to the nearest point of the other set, averaged over both directions."""
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))
    return float(d.min(axis=1).mean() + d.min(axis=0).mean()) / 2


def stroke_count(sketch: np.ndarray) -> int:
    """Strokes in a stroke-3 drawing (a trailing stroke without a pen lift counts too)."""
    pen = np.asarray(sketch)[:, 2]
    return int(pen.sum() + (len(pen) > 0 and pen[-1] == 0))


def retrieval_ranks(reconstructions: list[np.ndarray], inputs: list[np.ndarray]) -> np.ndarray:
    """For each reconstruction i, how many of the inputs are nearer to it than input i by
    Chamfer distance between normalised points (0: its own input is the nearest; an empty
    reconstruction gets the worst rank, len(inputs) - 1)."""
    targets = [normalised_points(s) for s in inputs]
    ranks = np.full(len(reconstructions), len(inputs) - 1)
    for i, r in enumerate(reconstructions):
        if len(r) == 0:
            continue
        points = normalised_points(r)
        distances = np.array([chamfer_distance(points, t) for t in targets])
        ranks[i] = int(np.sum(distances < distances[i]))
    return ranks


STALL_FRACTION = 0.125  # a stalled drawing's last moves are shorter than this share of a typical move
STALL_TAIL = 50


def is_stalled(drawing: np.ndarray, max_len: int, typical_move: float) -> bool:
    """Whether a sample ran to `max_len` points without ending while crawling: the median
    length of its last STALL_TAIL moves is under STALL_FRACTION of `typical_move`."""
    if len(drawing) < max_len:
        return False
    tail = np.asarray(drawing, np.float64)[-STALL_TAIL:, 0:2]
    return bool(np.median(np.hypot(tail[:, 0], tail[:, 1])) < STALL_FRACTION * typical_move)


def quality_report(sketcher, test: list[np.ndarray], seed: int = 0) -> dict:
    """Sampling quality of a loaded model on test drawings (drawing units):
    ending rate (100 samples at temperature 0.3 that reach end-of-sketch within max_seq_len
    steps), reconstruction retrieval top-1 (VAE only: 100 test drawings reconstructed at
    temperature 0.01, each matched to the nearest of the 100 by Chamfer distance), and median
    strokes and points of 200 samples at temperature 0.5 as ratios to the test set's.

    Finer retrieval figures than top-1, which sits at chance until reconstructions are near
    copies: `retrieval_top10`, the share whose own input is among the 10 nearest, and
    `retrieval_median_rank`, the median rank of the own input (0 is the nearest; chance 49.5).

    Sampling uses the library's defaults (the pen at pen_temperature 1). `ending_rate_paper_pen`
    is the ending rate with the pen tempered as in the paper (pen_temperature 0.3 too).

    Diagnostics of why a drawing does not end: `stalled_rate`, the share of the ending-rate
    samples that are stalled (see is_stalled; the typical move is the test set's median), and for
    a VAE `reconstruction_ending_rate`, the share of the retrieval reconstructions that end;
    and where the test drawings lift the pen and end, the model's teacher-forced probabilities
    of doing so (see pen_at_events)."""
    max_len = sketcher.hps.max_seq_len
    moves = np.concatenate([np.asarray(s, np.float64)[:, 0:2] for s in test])
    typical_move = float(np.median(np.hypot(moves[:, 0], moves[:, 1])))
    report: dict = pen_at_events(sketcher.model, normalize(test, sketcher.scale_factor),
                                 sketcher.hps)
    ending = sketcher.generate(n=100, temperature=0.3, seed=seed)
    report["ending_rate"] = float(np.mean([len(d) < max_len for d in ending]))
    report["stalled_rate"] = float(np.mean([is_stalled(d, max_len, typical_move) for d in ending]))
    paper_pen = sketcher.generate(n=100, temperature=0.3, seed=seed, pen_temperature=0.3)
    report["ending_rate_paper_pen"] = float(np.mean([len(d) < max_len for d in paper_pen]))
    if sketcher.conditional:
        inputs = test[:100]
        recon = sketcher.decode_many(sketcher.encode_many(inputs), temperature=0.01, seed=seed)
        report["reconstruction_ending_rate"] = float(np.mean([len(r) < max_len for r in recon]))
        ranks = retrieval_ranks(recon, inputs)
        report["retrieval_top1"] = float(np.mean(ranks == 0))
        report["retrieval_top10"] = float(np.mean(ranks < 10))
        report["retrieval_median_rank"] = float(np.median(ranks))
        report["retrieval_n"] = len(inputs)
    samples = sketcher.generate(n=200, temperature=0.5, seed=seed + 1)
    report["median_strokes_ratio"] = (float(np.median([stroke_count(s) for s in samples]))
                                      / float(np.median([stroke_count(s) for s in test])))
    report["median_points_ratio"] = (float(np.median([len(s) for s in samples]))
                                     / float(np.median([len(s) for s in test])))
    return report
