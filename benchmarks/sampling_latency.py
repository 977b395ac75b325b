"""Interactive latency of a model (the bundled VAE by default): load_model, complete (1, 4 and
8 candidates) on a 40-point real prefix and, for a VAE, reconstruct (8), interpolate (10 steps)
and encode_many (200 test sketches, the app's latent map); median and 90th percentile. The
drawings are brought to the model's size (Google's models draw larger than the sheep).

    python benchmarks/sampling_latency.py [--model assets/models/sheep_vae] [--repeats 20]
    python benchmarks/sampling_latency.py --quick      # 2 repeats, for CI
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sketch_model import load_model  # noqa: E402
from sketch_model.datasets import read_npz  # noqa: E402
from sketch_model.strokes import rescale  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "assets" / "models" / "sheep_vae"))
    parser.add_argument("--data", default=str(ROOT / "assets" / "data" / "aaron_sheep.npz"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    model = load_model(args.model)
    test = read_npz(args.data)["test"]
    scale = model.data_scale(test)  # Google's models draw larger than the sheep
    test = [rescale(s, scale) for s in test]
    prefix = next(s for s in test if len(s) >= 80)[:40]
    whole = next(s for s in test if len(s) >= 80)
    other = test[1]
    rows = [
        ("load_model", timed(lambda i: load_model(args.model), max(2, repeats // 4))),
        *((f"complete n={n}", timed(lambda i, n=n: model.complete(prefix, n=n, temperature=0.5,
                                                                  seed=i), repeats))
          for n in (1, 4, 8)),
    ]
    if model.conditional:
        rows += [
            ("reconstruct n=8", timed(lambda i: model.reconstruct(whole, n=8, temperature=0.5, seed=i), repeats)),
            ("interpolate 10", timed(lambda i: model.interpolate(whole, other, steps=10, seed=i), repeats)),
            ("encode_many 200", timed(lambda i: model.encode_many(test[:200]), repeats)),
        ]
    print(f"{'operation':>16} {'median ms':>10} {'p90 ms':>8}")
    for name, (median, p90) in rows:
        print(f"{name:>16} {1000 * median:10.1f} {1000 * p90:8.1f}")


if __name__ == "__main__":
    main()
