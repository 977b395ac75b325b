"""Quality figures of a model on a test split: test L_R and L_KL, ending rate, reconstruction
retrieval and shape statistics (see sketch_model.evaluate.quality_report).

    python benchmarks/model_quality.py MODEL DATA... [--split test|all] [--seed 0] [--json]

MODEL is a model directory or a sketch-rnn-js file; a model trained on drawings of another size
(Google's) is judged on the data brought to its size (`data_scale` in the report).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sketch_model import datasets, load_model  # noqa: E402
from sketch_model.evaluate import drawings_at_model_size, evaluate_losses, quality_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("data", nargs="+")
    parser.add_argument("--split", default="test", choices=[*datasets.SPLITS, "all"],
                        help="the split to judge on; all: every drawing of DATA (e.g. a sample file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.time()
    sketcher = load_model(args.model_dir)
    test, scale = drawings_at_model_size(sketcher, args.data, args.split)
    losses = evaluate_losses(sketcher.model, datasets.normalize(test, sketcher.scale_factor),
                             sketcher.hps)
    report = {"model": args.model_dir, "split": args.split, "n": losses["n"], "data_scale": scale,
              "L_R": losses["L_R"], "L_KL": losses["L_KL"],
              **quality_report(sketcher, test, seed=args.seed),
              "seconds": round(time.time() - started, 1)}
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
