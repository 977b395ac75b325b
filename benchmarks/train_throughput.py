"""Training throughput per decoder cell at the default hparams on aaron_sheep.npz, for both
ways of differentiating the recurrence (`recurrence_gradient`: "autodiff", the old path, and
"auto", the default: "batched" for lstm and layer_norm loops), against this machine's fp32
matrix-product speed measured in the same process.

    python benchmarks/train_throughput.py [--steps 10] [--warmup 3] [--cells lstm,layer_norm,hyper]
                                          [--paths autodiff,auto]
                                          [--set NAME=VALUE ...]   # e.g. matmul_dtype=bfloat16
    python benchmarks/train_throughput.py --quick      # a small model, for CI

Each (cell, path) runs in its own process on the same batches, so its peak memory (max RSS) is
its own. Useful FLOPs count the matrix products of the forward pass (encoder both ways, decoder
input and recurrent products, mixture head) for the steps before each sketch's end, times 3 for
the backward pass. The matmul speed is the median of five short samples taken before the
training steps: right after them TensorFlow's idle threads still spin, and numpy's product
measured then runs at about two thirds of its speed.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "assets" / "data" / "aaron_sheep.npz"
QUICK = ["dec_rnn_size=128", "enc_rnn_size=64", "z_size=32", "batch_size=20"]


def forward_flops_per_point(hps) -> float:
    """Matrix-product FLOPs of one sketch step in the forward pass."""
    h, e, k = hps.dec_rnn_size, hps.enc_rnn_size, hps.hyper_num_units
    d_in = 5 + (hps.z_size if hps.conditional else 0)
    flops = 2 * d_in * 4 * h + 2 * h * 4 * h + 2 * h * (3 + 6 * hps.num_mixture)
    if hps.conditional:
        flops += 2 * (2 * 5 * 4 * e + 2 * e * 4 * e)
    if hps.dec_model == "hyper":
        emb = hps.hyper_embedding_size
        flops += (2 * (d_in + h) * 4 * k + 2 * k * 4 * k + 2 * k * 8 * emb + 2 * 8 * emb * h
                  + 2 * k * 4 * emb + 2 * 4 * emb * h)
    return flops


def matmul_samples(batch: int, units: int, samples: int = 5, seconds: float = 0.2) -> list[float]:
    """numpy fp32 speeds (GFLOP/s) of the decoder's recurrent product (batch, units) @
    (units, 4 units), one per sample of `seconds`."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((batch, units), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((units, 4 * units), dtype=np.float32)
    for _ in range(10):
        a @ b
    speeds = []
    for _ in range(samples):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        speeds.append(2 * batch * units * 4 * units * count / (time.perf_counter() - start) / 1e9)
    return speeds


def run_cell(cell: str, path: str, steps: int, warmup: int, overrides: list[str]) -> dict:
    import numpy as np

    from sketch_model import datasets
    from sketch_model.config import HParams
    from sketch_model.model import build_model, kl_weight_at

    hps = HParams(dec_model=cell, recurrence_gradient=path).with_overrides(overrides)
    data = datasets.read_npz(DATA)["train"]
    train = datasets.normalize(data, datasets.scale_factor(data))
    batcher = datasets.Batcher(train, hps.batch_size, hps.max_seq_len, hps.seed,
                               hps.random_scale_factor, hps.augment_stroke_prob, hps.bucket_width)
    model = build_model(hps)
    speeds = matmul_samples(hps.batch_size, hps.dec_rnn_size)
    points, elapsed = 0, 0.0
    for step in range(warmup + steps):
        strokes, lengths = batcher.batch(step)
        model.kl_weight.assign(kl_weight_at(hps, step))
        start = time.perf_counter()
        model.train_on_batch({"strokes": strokes, "lengths": lengths})
        if step >= warmup:
            elapsed += time.perf_counter() - start
            points += int(lengths.sum())
    useful = 3 * forward_flops_per_point(hps) * points / elapsed / 1e9
    reference = float(np.median(speeds))
    return {"cell": cell, "path": path, "seconds_per_step": elapsed / steps,
            "sketches_per_second": hps.batch_size * steps / elapsed,
            "useful_gflops": useful, "matmul_gflops": reference, "ratio": useful / reference,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mean_points": points / (steps * hps.batch_size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per cell and path")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing)")
    parser.add_argument("--cells", default="lstm,layer_norm,hyper")
    parser.add_argument("--paths", default="autodiff,auto",
                        help="values of recurrence_gradient to time, old path first")
    parser.add_argument("--quick", action="store_true", help="small model, 2 steps: a smoke run")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override an hparam for every cell (repeatable)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = (QUICK if args.quick else []) + args.set
    steps, warmup = (2, 1) if args.quick else (args.steps, args.warmup)
    if args.child:
        cell, path = args.child.split(":")
        print(json.dumps(run_cell(cell, path, steps, warmup, overrides)))
        return
    print(f"{'cell':>10} {'path':>8} {'s/step':>7} {'sketch/s':>9} {'useful GF/s':>12} "
          f"{'matmul GF/s':>12} {'ratio':>6} {'speed-up':>9} {'max RSS MB':>11}")
    for cell in args.cells.split(","):
        first = None
        for path in args.paths.split(","):
            cmd = [sys.executable, __file__, "--child", f"{cell}:{path}", "--steps", str(steps),
                   "--warmup", str(warmup)] + (["--quick"] if args.quick else [])
            cmd += [f"--set={item}" for item in args.set]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            first = first or r
            print(f"{r['cell']:>10} {r['path']:>8} {r['seconds_per_step']:7.2f} "
                  f"{r['sketches_per_second']:9.1f} {r['useful_gflops']:12.1f} "
                  f"{r['matmul_gflops']:12.1f} {r['ratio']:6.2f} "
                  f"{first['seconds_per_step'] / r['seconds_per_step']:9.2f} "
                  f"{r['max_rss_mb']:11.0f}", flush=True)


if __name__ == "__main__":
    main()
