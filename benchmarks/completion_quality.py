"""Completion quality of a model on test drawings: each is cut after the whole stroke that ends
nearest half its points, the model completes the rest, and each completion is compared with
the original drawing.

    python benchmarks/completion_quality.py MODEL DATA... [--split test|all] [--n N] [--samples K]
        [--temperature 0.5] [--latent prefix|prior] [--seed 0] [--json] [--quick]

MODEL is anything `sketch_model.load_model` reads (ours, a run, a Google file); DATA are
sketch-rnn .npz or Quick, Draw! .ndjson files, brought to the size of drawing the model
expects (`data_scale` in the report; 1 for our sheep models). Drawings with a single stroke cannot be cut and are skipped (`skipped`).
Figures, over every completion (drawing units, absolute points):

- `ending_rate`: the share that reach an end (fewer than the model's max_seq_len points);
- `finish_rate`: the share that reach an end and add at least FAIR_SHARE (a fifth) of the
  points the cut removed;
- `median_length_ratio`: the completion's points over the original's, median;
- `median_width_ratio`, `median_height_ratio`: the completed drawing's bounding box over the
  original's; `extent_match_rate`: the share with both ratios within EXTENT_RANGE;
- `closer_rate`, `median_distance_ratio`: d_model, the symmetric Chamfer distance between the
  points of the true remainder and those the model added, against d_other, the same for the
  remainder of another test drawing (a random one, cut the same way) placed at the same cut
  point: the share where d_model < d_other, and the median of d_model / d_other. A completion
  that adds nothing is farther than any real ending.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sketch_model import SketchError, datasets, load_model  # noqa: E402
from sketch_model.evaluate import chamfer_distance, drawings_at_model_size  # noqa: E402

FAIR_SHARE = 0.2  # a finished completion adds at least this share of the points cut away
EXTENT_RANGE = (0.8, 1.25)  # width and height ratios counted as matching
QUICK_DRAWINGS = 10


def cut_length(drawing: np.ndarray) -> int | None:
    """Rows of the prefix: up to the end of the stroke (a pen lift before the last row) whose
    end is nearest half the drawing's points; None for a drawing of one stroke."""
    drawing = np.asarray(drawing)
    ends = np.flatnonzero(drawing[:-1, 2] > 0.5) + 1  # prefix lengths that end a stroke
    if len(ends) == 0:
        return None
    return int(ends[np.argmin(np.abs(ends - len(drawing) / 2))])


def absolute_points(drawing: np.ndarray) -> np.ndarray:
    """The absolute positions (n, 2) of a stroke-3 drawing's rows."""
    return np.cumsum(np.asarray(drawing, np.float64)[:, 0:2], axis=0)


def other_drawings(count: int, seed: int) -> np.ndarray:
    """For each of `count` drawings, the index of another one, drawn at random."""
    if count < 2:
        raise SketchError("the benchmark needs at least two drawings that can be cut")
    rng = np.random.default_rng(seed)
    return (np.arange(count) + rng.integers(1, count, size=count)) % count


def _extent(points: np.ndarray) -> np.ndarray:
    return points.max(axis=0) - points.min(axis=0)


def completion_report(sketcher, drawings: list[np.ndarray], samples: int = 1,
                      temperature: float = 0.5, latent: str | None = None, seed: int = 0) -> dict:
    """The figures of the module docstring for `samples` completions of each drawing that can
    be cut, by `sketcher` (a loaded model, or any object with its `complete` and
    `hps.max_seq_len`)."""
    max_len = sketcher.hps.max_seq_len
    cut = [(np.asarray(d, np.float32), cut_length(d)) for d in drawings]
    kept = [(d, k) for d, k in cut if k is not None]
    others = other_drawings(len(kept), seed)
    rows = []
    for i, (drawing, k) in enumerate(kept):
        truth = absolute_points(drawing)
        remainder = truth[k:]
        other, k_other = kept[others[i]]
        other_points = absolute_points(other)
        placed = truth[k - 1] + other_points[k_other:] - other_points[k_other - 1]
        d_other = chamfer_distance(remainder, placed)
        extent = np.maximum(_extent(truth), 1e-9)
        for completion in sketcher.complete(drawing[:k], n=samples, temperature=temperature,
                                            seed=seed + i, latent=latent):
            points = absolute_points(completion)
            added = points[k:]
            ended = len(completion) < max_len
            d_model = chamfer_distance(remainder, added) if len(added) else np.inf
            rows.append((ended, ended and len(added) >= FAIR_SHARE * len(remainder),
                         len(completion) / len(drawing), *(_extent(points) / extent),
                         d_model, d_other))
    ended, finished, length, width, height, d_model, d_other = map(np.array, zip(*rows))
    low, high = EXTENT_RANGE
    return {"drawings": len(kept), "skipped": len(cut) - len(kept), "completions": len(rows),
            "fair_share": FAIR_SHARE,
            "ending_rate": float(ended.mean()), "finish_rate": float(finished.mean()),
            "median_length_ratio": float(np.median(length)),
            "median_width_ratio": float(np.median(width)),
            "median_height_ratio": float(np.median(height)),
            "extent_match_rate": float(np.mean((width >= low) & (width <= high)
                                               & (height >= low) & (height <= high))),
            "closer_rate": float(np.mean(d_model < d_other)),
            "median_distance_ratio": float(np.median(d_model / np.maximum(d_other, 1e-12)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", nargs="+")
    parser.add_argument("--split", default="test", choices=[*datasets.SPLITS, "all"],
                        help="all: every drawing of DATA (e.g. a small sample file)")
    parser.add_argument("--n", type=int, help="the first N drawings of the split (default: all)")
    parser.add_argument("--samples", type=int, default=1, help="completions of each drawing")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--latent", choices=["prefix", "prior"], default=None,
                        help="a VAE's z: the encoded prefix, or z ~ N(0, I) "
                             "(default: the model's default_latent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true",
                        help=f"the first {QUICK_DRAWINGS} drawings, one completion each")
    args = parser.parse_args()
    started = time.time()
    try:
        sketcher = load_model(args.model)
        if args.latent == "prior" and not sketcher.conditional:
            parser.error("--latent prior needs a VAE; this model is unconditional")
        drawings, scale = drawings_at_model_size(sketcher, args.data, args.split)
        if args.quick:
            drawings, args.samples = drawings[:QUICK_DRAWINGS], 1
        elif args.n:
            drawings = drawings[:args.n]
        report = {"model": args.model, "split": args.split, "temperature": args.temperature,
                  "latent": (args.latent or sketcher.default_latent) if sketcher.conditional
                  else None, "data_scale": scale,
                  **completion_report(sketcher, drawings, args.samples, args.temperature,
                                      args.latent, args.seed),
                  "seconds": round(time.time() - started, 1)}
    except SketchError as err:
        sys.exit(f"error: {err}")
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
