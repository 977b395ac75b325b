"""What the pages share: where things live, the model picker, the drawing canvas, result display.

Everything here is glue over `sketch_model`'s public API; no model logic lives in the app.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/Home.py` does not put the repo root on the path
    sys.path.append(str(ROOT))

import sketch_model  # noqa: E402
from sketch_model import datasets, download, fit_to_model, google_models, render  # noqa: E402
from sketch_model.canvas import (canvas_to_stroke3, fabric_to_polylines,  # noqa: E402
                                 polylines_to_fabric)
from sketch_model.errors import SketchError  # noqa: E402
from sketch_model.strokes import rescale, stroke3_to_polylines  # noqa: E402
from sketch_model.files import STATUS_SCHEMA, read_json  # noqa: E402
from streamlit_drawable_canvas import st_canvas  # noqa: E402

# Where the app finds things; each can be pointed elsewhere with an environment variable.
MODELS_DIR = Path(os.environ.get("SKETCH_MODELS_DIR", ROOT / "assets" / "models"))
RUNS_DIR = Path(os.environ.get("SKETCH_RUNS_DIR", ROOT / "runs"))
DATA_DIR = Path(os.environ.get("SKETCH_DATA_DIR", ROOT / "assets" / "data"))


def _warm_up() -> None:
    """Import Keras and TensorFlow (seconds of work) while the person reads the first page: the
    library draws in numpy, but our own models' files are read through Keras."""
    import sketch_model.model  # noqa: F401


# once per app process, at the first page's first run
threading.Thread(target=_warm_up, name="sketch-model-warm-up", daemon=True).start()

CANVAS_SIZE = 360
USER_COLOR = "#d62728"  # the user's own strokes in results
MODEL_COLOR = "#1f77b4"  # the model's strokes drawn on the user's canvas
MAX_CANDIDATES = 9


# Settings kept when the user leaves a page and comes back (Streamlit forgets the state of a
# widget that a run does not draw, unless the key is set again on every page).
KEPT_SETTINGS = (
    "draw_n", "draw_temperature", "draw_live",
    "interp_method", "interp_steps", "interp_temperature", "interp_seed", "interp_source",
    "generate_n", "generate_temperature", "generate_seed", "generate_fixed",
    "train_bundled", "train_categories", "train_conditional", "train_cell", "train_size",
    "train_steps", "train_save_every", "train_batch", "train_lr", "train_kl", "train_max_len",
    "train_dropout", "train_name",
    "gallery_split",
)


def page_setup(title: str, icon: str = "✏️") -> None:
    st.set_page_config(page_title=f"{title} · sketch-rnn", page_icon=icon, layout="wide")
    for key in KEPT_SETTINGS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    st.title(title)


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call into the library; a user mistake (SketchError) becomes a message and returns None."""
    try:
        return fn(*args, **kwargs)
    except SketchError as err:
        st.error(str(err))
        return None


# ----------------------------------------------------------------------------- models

def _is_model_dir(path: Path) -> bool:
    return (path / "hparams.json").is_file() and (path / "model.keras").is_file()


def _conditional(path: Path) -> bool:
    try:
        return read_json(path / "hparams.json", {}).get("conditional") is not False
    except SketchError:
        return True


def _run_state(path: Path) -> str | None:
    try:
        return read_json(path / "status.json", STATUS_SCHEMA)["state"]
    except SketchError:
        return None


def _google_label(file: Path) -> str:
    name, kind = file.name[:-len(".json")].rsplit(".", 1)
    return f"{name.replace('_', ' ')} (Google{', VAE' if kind == 'vae' else ''})"


def list_models() -> dict[str, Path]:
    """Picker label -> directory or file: our bundled models (VAEs first), then Google's by
    class name (bundled, then downloaded with `models download`), then the user's finished
    or stopped runs, newest first."""
    models: dict[str, Path] = {}
    google: dict[str, Path] = {}
    if MODELS_DIR.is_dir():
        for path in sorted(MODELS_DIR.iterdir(), key=lambda p: (not _conditional(p), p.name)):
            if _is_model_dir(path):
                models[path.name] = path
    for file in [*google_models.bundled_models(MODELS_DIR).values(),
                 *google_models.cached_models().values()]:
        google.setdefault(_google_label(file), file)
    models.update(sorted(google.items()))
    if RUNS_DIR.is_dir():
        for path in sorted(RUNS_DIR.iterdir(), reverse=True):
            if _is_model_dir(path) and _run_state(path) in (None, "finished", "stopped"):
                models[f"{path.name} (your run)"] = path
    return models


def _stamp(path: Path) -> float:
    """Changes when a run directory's model files change, so a re-finished run is reloaded."""
    try:
        if path.is_file():
            return path.stat().st_mtime
        return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)
    except OSError:
        return 0.0


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def _load_model(path: str, stamp: float) -> sketch_model.Sketcher:
    return sketch_model.load_model(path)


def load_model(path: Path) -> sketch_model.Sketcher | None:
    return attempt(_load_model, str(path), _stamp(path))


def at_model_size(model: sketch_model.Sketcher, method: Callable[..., Any], *drawings: np.ndarray,
                  **kwargs: Any) -> list[np.ndarray] | None:
    """model.method(*drawings, **kwargs) with canvas drawings brought to the size of drawing
    the model was trained on, and its drawings brought back to the canvas's scale."""
    scale = model.input_scale(CANVAS_SIZE)
    results = attempt(method, *(rescale(d, scale) for d in drawings), **kwargs)
    return None if results is None else [rescale(r, 1.0 / scale) for r in results]


def model_picker(*, vae_only: bool = False, where: Any = None) -> sketch_model.Sketcher | None:
    """A model select box in the sidebar with the model's card; returns the loaded model or None.

    The choice is kept per session across pages. With vae_only, models without an encoder are
    still listed (so the choice carries over) but refused with a message.
    """
    where = where or st.sidebar
    models = list_models()
    if not models:
        where.warning(f"No models found in {MODELS_DIR} or {RUNS_DIR}. Train one on the Train page.")
        return None
    labels = list(models)
    chosen = st.session_state.get("model_choice")
    index = labels.index(chosen) if chosen in labels else 0
    label = where.selectbox("Model", labels, index=index, key=f"model_picker_{vae_only}",
                            help="Type to search. Our bundled models, Google's pretrained "
                                 "models by class, and the runs you trained.")
    st.session_state["model_choice"] = label
    model = load_model(models[label])
    if model is None:
        return None
    where.caption(model_summary(model))
    with where.expander("Model card", expanded=False):
        show_card(model)
    if vae_only and not model.hps.conditional:
        st.warning(f"**{label}** is an unconditional model: it has no encoder. "
                   "Pick a VAE (conditional) model for this.")
        return None
    return model


def model_summary(model: sketch_model.Sketcher) -> str:
    """One line: what the model is, who trained it, on what."""
    kind = ("VAE: completes, redraws and morphs" if model.hps.conditional
            else "decoder only: completes and generates")
    js = model.info.get("sketchrnn_js")
    if js:
        name = str(js.get("name", "")).replace("_", " ") or "its class"
        return f"{kind}. Trained by Google (Magenta) on Quick, Draw! {name}."
    data = model.info.get("dataset") or {}
    sources = ", ".join(Path(s).name for s in data.get("sources", [])) or "unknown data"
    return f"{kind}. Trained with this app's trainer on {sources}."


def _losses(values: Any) -> str:
    if not isinstance(values, dict):
        return str(values)
    parts = [f"{k.removeprefix('valid_')} {v:.3f}" for k, v in values.items()
             if isinstance(v, (int, float)) and ("L_" in k or "loss" in k)]
    return ", ".join(parts) or json.dumps(values)


def show_card(model: sketch_model.Sketcher) -> None:
    """What the model directory says about itself: data, size, training, test losses."""
    card, hps = model.card, model.hps
    kind = "VAE (conditional)" if hps.conditional else "unconditional decoder"
    lines = [f"**{kind}**: {hps.dec_model} decoder of {hps.dec_rnn_size} units"
             + (f", {hps.enc_model} encoder of 2×{hps.enc_rnn_size}, z of {hps.z_size}"
                if hps.conditional else "")
             + f", {hps.num_mixture} mixtures; up to {hps.max_seq_len} points"]
    data = card.get("dataset") or {}
    if data:
        sources = ", ".join(Path(s).name for s in data.get("sources", [])) or "?"
        sizes = data.get("sizes") or {}
        classes = data.get("classes") or []
        if data.get("streamed"):
            counts = f"; streamed, {sizes.get('valid', '?')} validation sketches"
        elif sizes:
            counts = (f"; {' / '.join(str(sizes.get(k, '?')) for k in ('train', 'valid', 'test'))}"
                      " train / valid / test sketches")
        else:
            counts = ""
        lines.append(f"**Data**: {sources}"
                     + (f" ({len(classes)} classes)" if len(classes) > 1 else "") + counts)
    lines.append(f"**Training**: {hps.num_steps:,} steps, batches of {hps.batch_size}")
    if card.get("best"):
        best = card["best"]
        lines.append(f"**Best validation** (step {best.get('step', '?')}): {_losses(best)}")
    evaluation = card.get("eval") or card.get("test")
    lines.append(f"**Test losses**: {_losses(evaluation)}" if evaluation else
                 "**Test losses**: not measured")
    st.markdown("  \n".join(lines))
    st.caption("Everything in the card:")
    st.json(card, expanded=False)
    if model.path is not None:
        show_readme(model.path)


_PICTURE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")  # ![caption](file) in a model card


def show_readme(directory: Path) -> None:
    """The model card (the directory's README.md) as it is written, its pictures drawn from the
    directory; nothing when the directory has no card."""
    readme = directory / "README.md"
    if not readme.is_file():
        return
    st.caption(f"{directory.name}/README.md:")
    parts = _PICTURE.split(readme.read_text(encoding="utf-8", errors="replace"))
    for i in range(0, len(parts), 3):  # text, then caption and file of the picture after it
        if parts[i].strip():
            st.markdown(parts[i])
        if i + 2 < len(parts):
            picture = (directory / parts[i + 2]).resolve()
            if picture.is_file() and picture.is_relative_to(directory.resolve()):
                st.image(str(picture), caption=parts[i + 1])


# ----------------------------------------------------------------------------- datasets

def bundled_datasets() -> dict[str, Path]:
    """Label -> file for the sketch-rnn .npz files shipped with the app."""
    if not DATA_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(DATA_DIR.rglob("*.npz"))}


def quickdraw_categories() -> dict[str, Path]:
    """Category -> ndjson file for the Quick, Draw! categories found locally (simplified preferred)."""
    found: dict[str, Path] = {}
    if not DATA_DIR.is_dir():
        return found
    for path in sorted(DATA_DIR.rglob("*.ndjson"), key=lambda p: "simplified" not in p.parts):
        found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def downloaded_categories() -> dict[str, Path]:
    """Category -> its full sketch-rnn .npz in the download cache (`data download`)."""
    folder = download.cache_dir() / "npz"
    return {c: folder / f"{c}.npz" for c in download.CATEGORIES if (folder / f"{c}.npz").is_file()}


def download_categories(names: list[str]) -> bool:
    """Fetch the full .npz of `names` into the cache with a progress bar; False (and a message
    saying what is here instead) when it cannot."""
    bar = st.progress(0.0, text="Connecting…")

    def progress(name: str, size: int, total: int | None) -> None:
        done = size / total if total else 0.0
        of = f" of {total / 1e6:.1f} MB" if total else ""
        bar.progress(min(done, 1.0), text=f"Downloading {name}: {size / 1e6:.1f} MB{of}")

    try:
        download.download(names, "npz", say=lambda _: None, progress=progress)
    except SketchError as err:
        bar.empty()
        st.error(f"The download failed: {err}. Without a network, train on what is here: the "
                 "bundled samples and the files you upload.")
        return False
    return True


@st.cache_data(max_entries=8, show_spinner="Reading the dataset…")
def load_dataset(paths: tuple[str, ...], max_seq_len: int) -> datasets.Dataset:
    return datasets.load_dataset(list(paths), max_seq_len)


def dataset_picker(key: str, where: Any = None, max_seq_len: int = 250):
    """Pick a bundled dataset or Quick, Draw! categories; returns (label, Dataset) or (None, None)."""
    where = where or st
    npz = bundled_datasets()
    categories = quickdraw_categories()
    options = [f"{name} (.npz)" for name in npz] + (["Quick, Draw! categories"] if categories else [])
    if not options:
        where.warning(f"No datasets found in {DATA_DIR}.")
        return None, None
    choice = where.selectbox("Dataset", options, key=f"{key}_source")
    if choice == "Quick, Draw! categories":
        picked = where.multiselect("Categories", list(categories), default=list(categories)[:3],
                                   key=f"{key}_categories", max_selections=12)
        if not picked:
            where.info("Pick at least one category.")
            return None, None
        paths = tuple(str(categories[c]) for c in picked)
        label = ", ".join(picked)
    else:
        name = choice.removesuffix(" (.npz)")
        paths, label = (str(npz[name]),), name
    data = attempt(load_dataset, paths, max_seq_len)
    return (label, data) if data is not None else (None, None)


def upload_name(name: str) -> str:
    """A file name any file system holds for an upload called `name`: its stem (the class
    label of an .npz) kept to letters, digits, spaces, '-' and '_' and cut to 100 bytes, and
    its extension (.npz unless it is .ndjson)."""
    path = Path(name.replace("\\", "/"))
    suffix = ".ndjson" if path.suffix.lower() == ".ndjson" else ".npz"
    stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in path.stem)
    stem = stem.encode("utf-8")[:100].decode("utf-8", errors="ignore").strip(" _") or "upload"
    return stem + suffix


def save_uploads(files) -> list[str]:
    """Save uploads under RUNS_DIR/uploads (one folder per content) and keep those that read as
    sketches; the same bytes uploaded twice, under any names, are one file.

    Each content is checked once per session; a file that is not a sketch file, or that cannot
    be saved, gets a message.
    """
    checked = st.session_state.setdefault("checked_uploads", {})  # digest -> (path, error)
    paths = []
    for file in files or []:
        content = file.getvalue()
        digest = hashlib.sha256(content).hexdigest()[:16]
        if digest not in checked:
            path = RUNS_DIR / "uploads" / digest / upload_name(file.name)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                if path.suffix == ".npz":
                    datasets.read_npz(path)
                else:
                    datasets.read_ndjson(path)
                checked[digest] = (str(path), None)
            except SketchError as err:
                checked[digest] = (str(path), f"is not a sketch file: {err}")
            except OSError as err:
                checked[digest] = (str(path), f"could not be saved: {err.strerror or err}")
        path, error = checked[digest]
        if error:
            st.sidebar.error(f"{file.name} {error}")
        elif path not in paths:
            paths.append(path)
    return paths


# ----------------------------------------------------------------------------- drawing

def drawing_canvas(key: str, *, size: int = CANVAS_SIZE) -> dict | None:
    """A freedraw canvas with Undo and Clear buttons; returns its Fabric.js JSON.

    Undo, Clear and Keep remount the canvas (a new widget key) with the edited drawing as its
    initial drawing, so the browser and the session agree on what is drawn; so does coming
    back to the page, whose canvas Streamlit forgot, with the last drawing seen.
    """
    version = st.session_state.setdefault(f"{key}_version", 0)
    saved = st.session_state.get(f"{key}_json")
    initial = st.session_state.get(f"{key}_initial")
    if (f"{key}_{version}" not in st.session_state and saved and saved.get("objects")
            and saved != initial):
        # back on the page: the canvas widget was forgotten with the strokes drawn on it
        st.session_state[f"{key}_initial"] = {"objects": list(saved["objects"])}
        version = st.session_state[f"{key}_version"] = version + 1
    initial = st.session_state.get(f"{key}_initial")
    # The component's own toolbar (undo, redo, delete, edit, send) sits above the canvas, over
    # the caption, in a shadow root that page CSS cannot reach; clipping the canvas's box hides
    # it, and Undo and Clear below do its work.
    st.html("<style>[class*=\"_canvas_box\"] { overflow: hidden; }</style>")
    with st.container(key=f"{key}_canvas_box"):
        result = st_canvas(stroke_width=3, stroke_color="#000000", background_color="#ffffff",
                           height=size, width=size, drawing_mode="freedraw",
                           initial_drawing=initial, key=f"{key}_{version}")
    json_data = result.json_data if result.json_data is not None else initial
    st.session_state[f"{key}_json"] = json_data

    def reset(undo: bool) -> None:
        # What the canvas holds now: its widget state, fresher than this run's json_data.
        state = st.session_state.get(f"{key}_{version}")
        raw = (state.get("drawing") or {}).get("raw") if isinstance(state, dict) else None
        current = list((raw or json_data or {}).get("objects") or [])
        st.session_state[f"{key}_initial"] = {"objects": current[:-1]} if undo else None
        st.session_state[f"{key}_json"] = st.session_state[f"{key}_initial"]
        st.session_state[f"{key}_version"] = version + 1

    objects = list((json_data or {}).get("objects") or [])
    left, right, info = st.columns([1, 1, 2], vertical_alignment="center")
    left.button("Undo", key=f"{key}_undo", on_click=reset, args=(True,),
                disabled=not objects, width="stretch")
    right.button("Clear", key=f"{key}_clear", on_click=reset, args=(False,),
                 disabled=not objects, width="stretch")
    info.container(key=f"{key}_count").caption(f"{len(objects)} stroke{'s' * (len(objects) != 1)}")
    return json_data


def drawing_digest(json_data: dict | None) -> str:
    """Names what is on a canvas: results made from it carry it, so that they are shown only
    beside the drawing they were made from."""
    try:  # by geometry: the canvas re-serialises what it was given with other fields
        lines, _ = fabric_to_polylines(json_data or {"objects": []})
        content = json.dumps([np.round(line, 1).tolist() for line in lines])
    except SketchError:
        content = json.dumps(json_data, sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def keep_on_canvas(key: str, drawing: np.ndarray, prefix_len: int) -> None:
    """Put a result's rows after `prefix_len` (canvas pixels, from the canvas's origin) on the
    canvas as strokes the user can draw on and undo: an on_click callback."""
    lines = stroke3_to_polylines(drawing)[int(np.sum(drawing[:prefix_len, 2] > 0)):]
    current = list((st.session_state.get(f"{key}_json") or {}).get("objects") or [])
    kept = {"objects": current + polylines_to_fabric(lines)}
    st.session_state[f"{key}_initial"] = st.session_state[f"{key}_json"] = kept
    st.session_state[f"{key}_version"] = st.session_state.get(f"{key}_version", 0) + 1


def in_place_svg(drawing: np.ndarray, prefix_len: int, size: int = CANVAS_SIZE) -> str:
    """A result where it belongs on the canvas, at the canvas's size: the user's rows in
    black, the model's in MODEL_COLOR."""
    return render.to_svg(drawing, size=size, margin=0.0, bounds=(0, 0, size, size),
                         stroke_width=3.0, color=MODEL_COLOR, highlight_rows=prefix_len,
                         highlight_color="#000000")


def thumbnail(drawing: np.ndarray, prefix_len: int, size: int = 96) -> None:
    """A small picture of a result in the in-place colours, fitted to its own extent."""
    st.image(render.to_svg(drawing, size=size, color=MODEL_COLOR, highlight_rows=prefix_len,
                           highlight_color="#000000"))


def canvas_drawing(json_data: dict | None, max_len: int | None = None) -> np.ndarray | None:
    """The canvas as stroke-3 (canvas pixels), fitted to `max_len` points; a message if unusable."""
    try:
        strokes, skipped = canvas_to_stroke3(json_data or {"objects": []}, epsilon=2.0)
    except SketchError as err:
        st.warning(str(err))
        return None
    if skipped:
        st.info(f"{skipped} object(s) on the canvas are not pen strokes and were left out.")
    if len(strokes) == 0:
        st.warning("The canvas is empty: draw something first.")
        return None
    extent = np.ptp(np.cumsum(strokes[:, :2], axis=0), axis=0) if len(strokes) > 1 else np.zeros(2)
    if len(strokes) < 2 or float(np.max(extent)) < 1.0:
        st.warning("That is a single dot: draw at least one line.")
        return None
    if max_len is not None:
        fitted = attempt(fit_to_model, strokes, max_len)
        if fitted is None:
            return None
        strokes, message = fitted
        if message:
            st.info(message[:1].upper() + message[1:] + ".")
    return strokes


# ----------------------------------------------------------------------------- results

def _json_bytes(drawing: np.ndarray) -> bytes:
    rows = [[round(float(dx), 3), round(float(dy), 3), int(pen)] for dx, dy, pen in drawing]
    return json.dumps(rows).encode()


def download_buttons(drawing: np.ndarray, name: str, highlight_rows: int = 0, key: str = "") -> None:
    """SVG, PNG and stroke-3 JSON downloads of one drawing (rendered only when clicked)."""
    style = {"highlight_rows": highlight_rows, "highlight_color": USER_COLOR}
    for label, ext, mime, data in (
        ("SVG", "svg", "image/svg+xml", lambda: render.to_svg(drawing, size=512, **style)),
        ("PNG", "png", "image/png", lambda: render.to_png(drawing, size=512, **style)),
        ("JSON", "json", "application/json", lambda: _json_bytes(drawing)),
    ):
        st.download_button(label, data, file_name=f"{name}.{ext}", mime=mime, key=f"{key}_{ext}",
                           on_click="ignore", icon=":material/download:", width="stretch")


def save_menu(drawing: np.ndarray, name: str, highlight_rows: int = 0, key: str = "") -> None:
    """A "Save" popover with the SVG, PNG and JSON downloads of one drawing."""
    with st.popover("Save", icon=":material/download:", width="stretch"):
        download_buttons(drawing, name, highlight_rows, key=key)


def svg_image(drawing: np.ndarray, *, size: int = 256, highlight_rows: int = 0,
              bounds: Any = None, caption: str | None = None) -> None:
    st.image(render.to_svg(drawing, size=size, highlight_rows=highlight_rows,
                           highlight_color=USER_COLOR, bounds=bounds), caption=caption)


def show_results(drawings: list[np.ndarray], *, key: str, prefix_len: int = 0,
                 name: str = "sketch", caption: str | None = None) -> None:
    """Candidates side by side, each with downloads, then a stroke-by-stroke replay of one."""
    if not drawings:
        return
    if caption:
        st.caption(caption)
    n = len(drawings)
    columns = st.columns(n if n <= 5 else {6: 3, 7: 4, 8: 4}.get(n, 5))
    for i, drawing in enumerate(drawings):
        with columns[i % len(columns)].container(key=f"{key}_candidate_{i}", border=True):
            svg_image(drawing, highlight_rows=prefix_len, caption=f"#{i + 1}: {len(drawing)} point{'s' * (len(drawing) != 1)}")
            save_menu(drawing, f"{name}-{i + 1}", prefix_len, key=f"{key}_dl_{i}")
    replay(drawings, key=key, prefix_len=prefix_len)


def replay(drawings: list[np.ndarray], *, key: str, prefix_len: int = 0) -> None:
    """Replay how the model drew a result: strokes[:k] at the full drawing's fixed bounds."""
    with st.expander("Replay stroke by stroke", expanded=False):
        which = 0
        if len(drawings) > 1:
            which = st.segmented_control("Drawing", range(len(drawings)), default=0,
                                         format_func=lambda i: f"#{i + 1}", key=f"{key}_replay_pick")
            which = which or 0
        drawing = drawings[which]
        _replay_one(drawing, key=f"{key}_replay_{which}", prefix_len=prefix_len)


@st.fragment
def _replay_one(drawing: np.ndarray, *, key: str, prefix_len: int) -> None:
    bounds = render.drawing_bounds(drawing)
    n = len(drawing)
    play = st.button("▶ Play", key=f"{key}_play")
    frame = st.empty()
    k = st.slider("Points drawn", 1, max(n, 2), value=n, key=f"{key}_k",
                  help="Move to see the drawing being made point by point.")
    show = lambda m: frame.image(render.to_svg(drawing[:m], size=320, bounds=bounds,  # noqa: E731
                                               highlight_rows=min(prefix_len, m),
                                               highlight_color=USER_COLOR), width=320)
    if play:
        for m in range(1, n + 1, max(1, n // 60)):
            show(m)
            time.sleep(0.04)
    show(k)


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components (numpy SVD)."""
    centred = np.asarray(points, dtype=np.float64) - np.mean(points, axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    return projected if projected.shape[1] == 2 else np.pad(projected, ((0, 0), (0, 1)))
