"""Google's pretrained sketch-rnn models: `python -m sketch_model models list` shows the classes
Google publishes and which are here; `python -m sketch_model models download CLASS... --kind
gen|vae` fetches them.

The files come from the public bucket `quickdraw-models`, folder `sketchRNN/large_models/`
(<class>.gen.json, decoder only, and <class>.vae.json, a VAE; `everything` is gen only), or a
mirror laid out like it (--base-url or SKETCH_MODEL_MODELS_URL). They go to the same cache as
`data download` (--cache, else SKETCH_MODEL_CACHE, else ~/.cache/sketch_model/quickdraw), in
its folder sketchrnn_js/, through the same checked, resumable `fetch`; a file is kept only if
it reads as a sketch-rnn-js model of the kind asked for.
"""

from __future__ import annotations

import argparse
import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Callable

from .download import base_url, cache_dir, fetch
from .errors import DataFileError, ModelFileError

DEFAULT_MODELS_URL = "https://storage.googleapis.com/quickdraw-models/sketchRNN/large_models"
CLASSES: tuple[str, ...] = tuple(
    resources.files(__package__).joinpath("sketchrnn_js_classes.txt").read_text().split())
GEN_ONLY = {"everything"}
KINDS = ("gen", "vae")
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"


def models_url(url: str | None = None) -> str:
    """The models' address: `url`, else $SKETCH_MODEL_MODELS_URL, else Google's bucket."""
    return base_url(url or os.environ.get("SKETCH_MODEL_MODELS_URL") or DEFAULT_MODELS_URL)


def models_cache(cache: str | Path | None = None) -> Path:
    """Where downloaded models are kept: the data cache's sketchrnn_js/ folder."""
    return cache_dir(cache) / "sketchrnn_js"


def model_class(name: str) -> str:
    """The published name of a class, forgiving case, spaces for underscores and extra spaces."""
    folded = "_".join(name.lower().replace("_", " ").split())
    if folded in CLASSES:
        return folded
    close = difflib.get_close_matches(folded, CLASSES, n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "`models list` shows them all"
    raise DataFileError(f"Google publishes no sketch-rnn model of {name!r}; {hint}")


def bundled_models(root: Path = BUNDLED_DIR) -> dict[str, Path]:
    """`<class>.<kind>` -> file, for the Google models shipped in assets/models/."""
    found: dict[str, Path] = {}
    if root.is_dir():
        for kind in KINDS:
            for path in sorted(root.glob(f"*/*.{kind}.json")):
                found[path.name[:-len(".json")]] = path
    return found


def cached_models(cache: str | Path | None = None) -> dict[str, Path]:
    """`<class>.<kind>` -> file, for the models downloaded into the cache."""
    folder = models_cache(cache)
    if not folder.is_dir():
        return {}
    return {p.name[:-len(".json")]: p for kind in KINDS for p in sorted(folder.glob(f"*.{kind}.json"))}


def _check_kind(kind: str) -> Callable[[Path], None]:
    from .sketchrnn_js import read_sketchrnn_js  # loads the framework: only when fetching

    def check(path: Path) -> None:
        try:
            _, meta = read_sketchrnn_js(path)
        except ModelFileError as err:
            raise DataFileError(str(err)) from None
        if meta["kind"] != kind:
            raise DataFileError(f"it holds a {meta['kind']} model, not a {kind} model")
    return check


def download_models(names: list[str], kind: str = "gen", cache: str | Path | None = None,
                    url: str | None = None, say: Callable[[str], None] = print) -> list[Path]:
    """The local paths of the `kind` models of classes `names`, fetching those not yet in the
    cache. Every name is checked before anything is fetched."""
    if kind not in KINDS:
        raise DataFileError(f"unknown kind {kind!r}; choose gen (decoder only) or vae")
    classes = [model_class(name) for name in names]
    if kind == "vae" and GEN_ONLY.intersection(classes):
        raise DataFileError(f"{', '.join(sorted(GEN_ONLY.intersection(classes)))}: published as "
                            "a gen model only; use --kind gen")
    from .sketchrnn_js import MAX_FILE_BYTES

    base, folder = models_url(url), models_cache(cache)
    paths = []
    for name in classes:
        path = folder / f"{name}.{kind}.json"
        if path.exists():
            say(f"cached: {path}")
        else:
            fetch(f"{base}/{name}.{kind}.json", path, validate=_check_kind(kind),
                  max_bytes=MAX_FILE_BYTES, progress_label=path.name)
            say(f"downloaded: {path}")
        paths.append(path)
    return paths


def list_models(cache: str | Path | None = None, say: Callable[[str], None] = print) -> None:
    """Print every published class with, per kind, "bundled", "cached" or "-"."""
    bundled, cached = bundled_models(), cached_models(cache)
    width = max(map(len, CLASSES)) + 2
    say("class".ljust(width) + "gen".ljust(10) + "vae")
    here = 0
    for name in CLASSES:
        states = []
        for kind in KINDS:
            key = f"{name}.{kind}"
            states.append("bundled" if key in bundled else "cached" if key in cached
                          else "n/a" if kind == "vae" and name in GEN_ONLY else "-")
        here += any(s in ("bundled", "cached") for s in states)
        say(name.ljust(width) + states[0].ljust(10) + states[1])
    say(f"{len(CLASSES)} classes published by Google (sketch-rnn-js, Apache-2.0); {here} here "
        f"({len(bundled)} files bundled, {len(cached)} in {models_cache(cache)})")


def add_models_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `models list` and `models download` on the command line's subparsers."""
    models = subparsers.add_parser("models", help="Google's pretrained sketch-rnn models: "
                                                  "list the classes, download them")
    commands = models.add_subparsers(dest="models_command", required=True)
    cache_help = ("download folder; models go to its sketchrnn_js/ (default: "
                  "$SKETCH_MODEL_CACHE, else ~/.cache/sketch_model/quickdraw)")

    p = commands.add_parser("list", help="the classes Google publishes, and which are here")
    p.add_argument("--cache", help=cache_help)
    p.set_defaults(run=lambda args: list_models(args.cache))

    p = commands.add_parser("download", help="fetch Google's models of the named classes")
    p.add_argument("classes", nargs="+", metavar="CLASS", help='class names, e.g. cat "palm tree"')
    p.add_argument("--kind", default="gen", choices=KINDS,
                   help="gen: decoder only (completes and generates); vae: also encodes, "
                        "reconstructs and interpolates")
    p.add_argument("--cache", help=cache_help)
    p.add_argument("--base-url", help="the bucket folder or a mirror (default: "
                                      f"$SKETCH_MODEL_MODELS_URL, else {DEFAULT_MODELS_URL})")
    p.set_defaults(run=lambda args: download_models(args.classes, args.kind, args.cache,
                                                    args.base_url))
