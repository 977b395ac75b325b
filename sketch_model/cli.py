"""The command line: python -m sketch_model {train, eval, sample, export, simplify, data, models}."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .config import PEN_TEMPERATURE
from .download import add_data_commands
from .errors import DISK_FULL, SketchError
from .files import check_output_path
from .google_models import add_models_commands

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "sheep_vae"


def _train(args: argparse.Namespace) -> None:
    from .train import train

    train(args.data, args.out, steps=args.steps, overrides=args.set,
          distribution=args.distribute, devices=args.devices.split(",") if args.devices else None,
          start_from=args.start_from)


def _eval(args: argparse.Namespace) -> None:
    from . import datasets
    from .evaluate import evaluate_losses
    from .sample import load_model

    sketcher = load_model(args.model_dir)
    hps = sketcher.hps
    data = datasets.load_dataset(args.data, hps.max_seq_len, splits=(args.split,))
    sketches = datasets.normalize(getattr(data, args.split), sketcher.scale_factor)
    result = evaluate_losses(sketcher.model, sketches, hps)
    result.update(split=args.split, dropped_too_long=data.dropped_too_long[args.split])
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.split}: n={result['n']} L_R={result['L_R']:.4f} L_KL={result['L_KL']:.4f} "
              f"loss={result['loss']:.4f}")


def _sample(args: argparse.Namespace) -> None:
    from .render import save_drawings
    from .sample import load_model

    check_output_path(args.out)  # before the model is loaded and the drawings made
    sketcher = load_model(args.model_dir)
    drawings = sketcher.generate(n=args.n, temperature=args.temperature, seed=args.seed,
                                 pen_temperature=args.pen_temperature)
    save_drawings(args.out, drawings)
    print(f"wrote {len(drawings)} drawing(s) to {args.out}")


def _export(args: argparse.Namespace) -> None:
    from .sample import load_model
    from .sketchrnn_js import export_sketchrnn_js

    check_output_path(args.out)
    written = export_sketchrnn_js(load_model(args.model_dir), args.out, name=args.name)
    print(f"wrote {args.out}: {'VAE' if written['mode'] == 0 else 'decoder-only'} model "
          f"{written['name']!r}, weights rounded to int16 (largest change "
          f"{written['largest_change']:.1e}, {written['clipped']} clipped to +-10)")


def _simplify(args: argparse.Namespace) -> None:
    from .quickdraw import simplify_ndjson

    counts = simplify_ndjson(Path(args.raw), Path(args.out))
    print(json.dumps(counts))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sketch_model",
                                     description="sketch-rnn: train, evaluate and sample sketch models")
    parser.add_argument("--version", action="version", version=f"sketch_model {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model, or resume the run in --out")
    p.add_argument("data", nargs="+", help=".npz or .ndjson files, or directories of them "
                                           "(ndjson files are streamed, never held whole)")
    p.add_argument("--out", required=True, help="run directory (created, or resumed if it holds a run)")
    p.add_argument("--steps", type=int, help="total training steps (hparam num_steps)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override an hparam, e.g. --set dec_model=layer_norm (repeatable)")
    p.add_argument("--from", dest="start_from", metavar="MODEL_DIR",
                   help="start a new run from a trained model: its hparams (--set on top), "
                        "weights, scale factor and step, with a fresh optimizer")
    p.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none",
                   help="data-parallel training: mirrored (all GPUs of this host) or multiworker "
                        "(hosts set by TF_CONFIG; every worker runs the same command)")
    p.add_argument("--devices", help="with --distribute mirrored: the devices, e.g. /gpu:0,/gpu:1")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="losses of a model on a data split, as the reference evaluates")
    p.add_argument("model_dir")
    p.add_argument("data", nargs="+")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_eval)

    p = sub.add_parser("sample", help="draw new sketches from a model")
    p.add_argument("model_dir", nargs="?", default=str(BUNDLED_MODEL),
                   help="model or run directory (default: the bundled sheep_vae)")
    p.add_argument("--n", type=int, default=9)
    p.add_argument("--temperature", type=float, default=0.5,
                   help="randomness of the shape: mixture weights and spread (default 0.5)")
    p.add_argument("--pen-temperature", type=float, default=PEN_TEMPERATURE,
                   help="temperature of the pen lifts and the end (default 1: the model's own "
                        "probabilities; equal to --temperature for the paper's sampling)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="output file: .svg, .png or .json (stroke-3 lists)")
    p.set_defaults(run=_sample)

    p = sub.add_parser("export", help="write a model in Google's sketch-rnn-js JSON format, "
                                      "for sketch-rnn-js and @magenta/sketch")
    p.add_argument("model_dir", help="model or run directory (LSTM cells only)")
    p.add_argument("--out", required=True,
                   help="FILE.gen.json for a decoder-only model, FILE.vae.json for a VAE")
    p.add_argument("--name", help="the class name stored in the file (default: the model's)")
    p.set_defaults(run=_export)

    p = sub.add_parser("simplify", help="Quick, Draw! preprocessing of a raw ndjson file")
    p.add_argument("raw", help="raw Quick, Draw! .ndjson")
    p.add_argument("--out", required=True, help="simplified .ndjson to write")
    p.set_defaults(run=_simplify)

    add_data_commands(sub)
    add_models_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except SketchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # bad settings, e.g. --set with an unknown name
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        print(f"error: the disk is full ({err}); what was written before is kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
