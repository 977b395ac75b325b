"""Google's sketch-rnn-js format: reading the real published files, writing ours, refusing bad
files, and agreement with the real reference implementation, @magenta/sketch 0.2.0 under Node
(installed by `npm ci` from the repo's package-lock.json; never skipped)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import sketch_model
from sketch_model import ModelFileError, SketchError, datasets
from sketch_model.config import HParams
from sketch_model.model import SketchRNN
from sketch_model.sample import Sketcher
from sketch_model.sketchrnn_js import GOOGLE_DRAWING_SIZE, export_sketchrnn_js, read_sketchrnn_js
from sketch_model.strokes import stroke3_to_stroke5

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GOOGLE = SHARED / "sketchrnn_js_models"
QUICKDRAW = SHARED / "quickdraw_mini" / "simplified"
REFERENCE = ROOT / "tests" / "js" / "mixture_params.js"
TEMPERATURES = [0.25, 1.0]
SCALED = ("mu_x", "mu_y", "sigma_x", "sigma_y")


def google_file(name: str) -> Path:
    path = GOOGLE / f"{name}.gen.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: the shared data must sit beside the repository")
    return path


def quickdraw_drawing(cls: str, sketcher: Sketcher, index: int = 0) -> np.ndarray:
    """A real drawing of the class, brought from the 0-255 frame to the model's size."""
    drawing = datasets.read_ndjson(QUICKDRAW / f"{cls}.ndjson").sketches[index].astype(np.float32)
    drawing[:, :2] *= sketcher.input_scale(255)
    return drawing[:sketcher.hps.max_seq_len]


def reference_mixtures(model_file: Path, drawing: np.ndarray, tmp_path: Path) -> list:
    """@magenta/sketch's getPDF at every step, for each of TEMPERATURES (its model units)."""
    node = shutil.which("node")
    assert node, "Node.js is missing: the README's test command installs it (apt nodejs npm)"
    assert (ROOT / "node_modules" / "@magenta" / "sketch").is_dir(), \
        "@magenta/sketch is not installed: run `npm ci` in the repository root"
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"model": str(model_file), "temperatures": TEMPERATURES,
                                   "strokes": stroke3_to_stroke5(drawing, len(drawing)).tolist()}))
    done = subprocess.run([node, str(REFERENCE), str(request)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["steps"]


def assert_matches_reference(sketcher: Sketcher, drawing: np.ndarray, tmp_path: Path) -> float:
    """Every mixture parameter and pen probability at every step within 1e-4 of @magenta/sketch;
    returns the largest difference seen."""
    steps = reference_mixtures(sketcher.path, drawing, tmp_path)
    assert len(steps) == len(drawing) + 1
    worst = 0.0
    for i, t in enumerate(TEMPERATURES):
        ours = sketcher.distributions(drawing, temperature=t)
        for key, values in ours.items():
            theirs = np.array([step[i][key] for step in steps])
            mine = values / sketcher.scale_factor if key in SCALED else values
            diff = float(np.max(np.abs(mine - theirs)))
            assert diff <= 1e-4, f"{key} at temperature {t} differs by {diff:.2e}"
            worst = max(worst, diff)
    return worst


@pytest.mark.parametrize("cls", ["sheep", "bicycle", "rabbit"])
def test_google_models_agree_with_magenta_sketch(cls, tmp_path):
    sketcher = sketch_model.load_model(google_file(cls))
    drawing = quickdraw_drawing(cls, sketcher)
    assert len(drawing) > 30
    assert_matches_reference(sketcher, drawing, tmp_path)


def test_our_exported_sheep_agrees_with_magenta_sketch(tmp_path):
    out = tmp_path / "sheep.gen.json"
    export_sketchrnn_js(sketch_model.load_model(ROOT / "assets/models/sheep_uncond"), out)
    exported = sketch_model.load_model(out)
    sheep = datasets.read_npz(ROOT / "assets/data/aaron_sheep.npz")["test"][0].astype(np.float32)
    assert_matches_reference(exported, sheep, tmp_path)


# --- reading ------------------------------------------------------------------------------

def naive_int16(blob: str) -> np.ndarray:
    raw = base64.b64decode(blob)
    return np.array(struct.unpack(f"<{len(raw) // 2}h", raw), np.float64) * 10.0 / 32767.0


@pytest.mark.parametrize("path", sorted(GOOGLE.glob("*.gen.json")), ids=lambda p: p.name)
def test_every_shared_google_model_reads(path):
    info, dims, blobs = json.loads(path.read_text())
    sketcher = sketch_model.load_model(path)
    hps = sketcher.hps
    assert (hps.conditional, hps.dec_model, hps.dec_rnn_size, hps.num_mixture) == (False, "lstm", 512, 20)
    assert hps.max_seq_len == info["max_seq_len"]
    assert sketcher.scale_factor == pytest.approx(info["scale_factor"])
    assert sketcher.drawing_size == GOOGLE_DRAWING_SIZE
    np.testing.assert_allclose(sketcher.head[0].ravel(), naive_int16(blobs[0]), atol=1e-6)
    np.testing.assert_allclose(sketcher.decoder.w["W_hh"].ravel(), naive_int16(blobs[3]), atol=1e-6)


def test_generate_and_complete_in_drawing_units():
    sketcher = sketch_model.load_model(google_file("sheep"))
    drawings = sketcher.generate(n=3, temperature=0.3, seed=0)
    extents = [np.ptp(np.cumsum(d[:, :2], axis=0), axis=0).max() for d in drawings]
    assert all(300 < e < 3000 for e in extents), extents  # data units, not model units (~10)
    prefix = quickdraw_drawing("sheep", sketcher)[:30]
    completions = sketcher.complete(prefix, n=2, temperature=0.3, seed=0)
    for c in completions:
        np.testing.assert_array_equal(c[:30], prefix)
        assert len(c) > 30


def rewrite(src: Path, dst: Path, **info_changes) -> Path:
    info, dims, blobs = json.loads(src.read_text())
    info.update(info_changes)
    dst.write_text(json.dumps([info, dims, blobs]))
    return dst


def test_older_variants_read_the_same(tmp_path):
    """mode "gen", version 2 and extra info keys (as older published files have) change nothing."""
    src = google_file("sheep")
    old = rewrite(src, tmp_path / "old.gen.json", mode="gen", version=2, r_loss=-1.2,
                  kl_loss=0.0, training_size=70000)
    drawing = quickdraw_drawing("sheep", sketch_model.load_model(src))[:20]
    a = sketch_model.load_model(src).distributions(drawing)
    b = sketch_model.load_model(old).distributions(drawing)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert sketch_model.load_model(old).info["sketchrnn_js"]["training_size"] == 70000


def test_model_directory_with_one_google_file_loads(tmp_path):
    shutil.copy(google_file("key"), tmp_path / "key.gen.json")
    (tmp_path / "README.md").write_text("card")
    assert sketch_model.load_model(tmp_path).hps.max_seq_len == 110


# --- VAEs: checked against a naive reader written from the format's description -----------

def tiny_vae(seed: int = 3) -> Sketcher:
    hps = HParams(enc_rnn_size=8, dec_rnn_size=16, z_size=4, num_mixture=20, max_seq_len=40,
                  seed=seed)
    model = SketchRNN(hps)
    rng = np.random.default_rng(seed)
    for v in model.weights:  # weights large enough that a mixed-up layout would show
        if v.trainable:
            v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
    return Sketcher(model, scale_factor=20.0, drawing_size=300.0)


def naive_vae_mixture(path: Path, drawing: np.ndarray, z: np.ndarray) -> dict:
    """The format as ../shared/data/README.md and sketch-rnn-js describe it, step by step."""
    info, dims, blobs = json.loads(path.read_text())
    w = [naive_int16(b).reshape(d) for b, d in zip(blobs, dims)]
    out_w, out_b, dec_xh, dec_hh, dec_b = w[12:17]
    units = dec_hh.shape[0]
    if info["version"] < 6:
        z = np.tanh(z)
    state = np.tanh(z @ w[10] + w[11])
    c, h = state[:units], state[units:]  # the file's initial state is (c, h)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    rows = [[0, 0, 1, 0, 0]] + stroke3_to_stroke5(drawing, len(drawing)).tolist()
    mixtures = []
    for row in rows:
        x = np.array(row, np.float64)
        x[:2] /= info["scale_factor"]
        gates = np.concatenate([x, z]) @ dec_xh + h @ dec_hh + dec_b
        i, j, f, o = np.split(gates, 4)
        c = c * sig(f + 1.0) + sig(i) * np.tanh(j)
        h = np.tanh(c) * sig(o)
        y = h @ out_w + out_b
        pi = np.exp(y[3:23] - y[3:23].max())
        pen = np.exp(y[:3] - y[:3].max())
        mixtures.append({"pi": pi / pi.sum(), "mu_x": y[23:43] * info["scale_factor"],
                         "sigma_y": np.exp(y[83:103]) * info["scale_factor"],
                         "corr": np.tanh(y[103:123]), "pen": pen / pen.sum()})
    return {k: np.array([m[k] for m in mixtures]) for k in mixtures[0]}


@pytest.mark.parametrize("version", [6, 5])
def test_vae_file_matches_naive_reader(tmp_path, version):
    out = tmp_path / "tiny.vae.json"
    export_sketchrnn_js(tiny_vae(), out)
    path = rewrite(out, tmp_path / f"v{version}.vae.json", version=version)
    loaded = sketch_model.load_model(path)
    assert loaded.conditional and loaded.hps.z_size == 4 and loaded.squash_latent == (version < 6)
    drawing = np.array([[5, 3, 0], [10, -4, 0], [2, 8, 1], [-7, 1, 0], [3, 3, 1]], np.float32)
    z = np.array([1.5, -0.7, 0.3, 2.0], np.float32)
    ours = loaded.distributions(drawing, z=z)
    for key, naive in naive_vae_mixture(path, drawing, z).items():
        np.testing.assert_allclose(ours[key], naive, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("mode", [0, 1, "vae"])
def test_vae_modes_read(tmp_path, mode):
    out = tmp_path / "tiny.vae.json"
    export_sketchrnn_js(tiny_vae(), out)
    loaded = sketch_model.load_model(rewrite(out, tmp_path / "m.vae.json", mode=mode))
    drawing = np.array([[5, 3, 0], [10, -4, 1], [2, 8, 1]], np.float32)
    assert loaded.encode(drawing).shape == (4,)
    assert len(loaded.reconstruct(drawing, n=2, seed=0)) == 2
    assert len(loaded.interpolate(drawing, drawing[::-1], steps=3, seed=0)) == 3


# --- writing ------------------------------------------------------------------------------

def test_round_trip_within_quantisation(tmp_path):
    original = tiny_vae()
    out = tmp_path / "tiny.vae.json"
    written = export_sketchrnn_js(original, out)
    assert written["clipped"] == 0 and 0 < written["largest_change"] <= 0.5 * 10 / 32767 + 1e-9
    loaded = sketch_model.load_model(out)
    step = 10 / 32767
    for name, array in original.weights.arrays.items():  # each weight on its int16 step
        np.testing.assert_allclose(loaded.weights.arrays[name], np.round(array / step) * step,
                                   atol=1e-6, err_msg=name)
    drawing = np.array([[5, 3, 0], [10, -4, 0], [2, 8, 1], [-7, 1, 0]], np.float32)
    z = np.array([0.5, -0.2, 0.1, 1.0], np.float32)
    a, b = original.distributions(drawing, z=z), loaded.distributions(drawing, z=z)
    for key in a:  # weights moved by at most 1.5e-4 each; the mixtures (model units) by < 1e-2
        unit = original.scale_factor if key in SCALED else 1.0
        diff = np.abs(b[key] - a[key]) / unit
        assert 0 < diff.max() < 1e-2, (key, diff.max())
    assert loaded.drawing_size == 300.0 and loaded.scale_factor == pytest.approx(20.0)


@pytest.mark.parametrize("change, reason", [
    ({"dec_model": "layer_norm"}, "layer_norm cell"),
    ({"dec_model": "hyper"}, "hyper cell"),
    ({"enc_model": "layer_norm"}, "encoder is a layer_norm"),
    ({"position_input": True}, "position_input"),
    ({"num_mixture": 5}, "exactly 20"),
    ({"encode_prefix_prob": 0.5}, "end marked"),
])
def test_export_refuses_what_the_format_cannot_hold(tmp_path, change, reason):
    hps = HParams(enc_rnn_size=8, dec_rnn_size=16, z_size=4, hyper_num_units=8,
                  hyper_embedding_size=4, max_seq_len=40).replace(**change)
    with pytest.raises(SketchError, match=reason):
        export_sketchrnn_js(Sketcher(SketchRNN(hps), 1.0), tmp_path / "x.vae.json")
    assert not list(tmp_path.iterdir())


def test_export_command(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "sketch_model", *args],  # noqa: E731
                                       capture_output=True, text=True, cwd=ROOT)
    wrong = run("export", "assets/models/sheep_vae", "--out", str(tmp_path / "sheep.gen.json"))
    assert wrong.returncode == 2 and "sheep.vae.json" in wrong.stderr
    assert not (tmp_path / "sheep.gen.json").exists()
    done = run("export", "assets/models/sheep_uncond", "--out", str(tmp_path / "sheep.gen.json"))
    assert done.returncode == 0, done.stderr
    info, dims, _ = json.loads((tmp_path / "sheep.gen.json").read_text())
    assert info["mode"] == 2 and dims[0] == [512, 123] and info["max_seq_len"] == 250
    sampled = run("sample", str(tmp_path / "sheep.gen.json"), "--n", "2", "--seed", "0",
                  "--out", str(tmp_path / "s.json"))
    assert sampled.returncode == 0, sampled.stderr
    assert len(json.loads((tmp_path / "s.json").read_text())) == 2


# --- bad files ----------------------------------------------------------------------------

def sheep_parts() -> list:
    return json.loads(google_file("sheep").read_text())


def write(tmp_path: Path, content, name: str = "bad.gen.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def mutate(change) -> list:
    parts = sheep_parts()
    change(parts)
    return parts


BAD = {
    "not JSON": "<html>not found</html>",
    "empty": "",
    "a JSON object": {"mode": 2},
    "two elements": lambda: sheep_parts()[:2],
    "wrong dims": lambda: mutate(lambda p: p[1].__setitem__(0, [512, 124])),
    "inconsistent dims": lambda: mutate(lambda p: p[1].__setitem__(2, [5, 1024])),
    "bad base64": lambda: mutate(lambda p: p[2].__setitem__(1, "!" + p[2][1][1:])),
    "short blob": lambda: mutate(lambda p: p[2].__setitem__(3, p[2][3][:-8])),
    "a number for a blob": lambda: mutate(lambda p: p[2].__setitem__(4, 7)),
    "missing blob": lambda: mutate(lambda p: p[2].pop()),
    "NaN scale": lambda: mutate(lambda p: p[0].__setitem__("scale_factor", float("nan"))),
    "negative scale": lambda: mutate(lambda p: p[0].__setitem__("scale_factor", -3)),
    "string scale": lambda: mutate(lambda p: p[0].__setitem__("scale_factor", "63")),
    "no max_seq_len": lambda: mutate(lambda p: p[0].pop("max_seq_len")),
    "absurd max_seq_len": lambda: mutate(lambda p: p[0].__setitem__("max_seq_len", 10 ** 12)),
    "unknown mode": lambda: mutate(lambda p: p[0].__setitem__("mode", "decoder")),
    "VAE mode on gen arrays": lambda: mutate(lambda p: p[0].__setitem__("mode", 0)),
    "absurd sizes": lambda: mutate(lambda p: p[1].__setitem__(0, [10 ** 9, 123])),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused(tmp_path, case):
    content = BAD[case]() if callable(BAD[case]) else BAD[case]
    with pytest.raises(ModelFileError, match="not a sketch-rnn-js model file"):
        sketch_model.load_model(write(tmp_path, content))


def test_truncated_file_is_refused(tmp_path):
    text = google_file("sheep").read_text()
    with pytest.raises(ModelFileError, match="not valid JSON"):
        sketch_model.load_model(write(tmp_path, text[:len(text) // 2]))


def test_huge_sizes_are_refused_before_allocating(tmp_path):
    """dims of a 4096-unit model with 8-character blobs: refused with no large allocation."""
    parts = [{"mode": 2, "max_seq_len": 100, "scale_factor": 50.0},
             [[4096, 123], [123], [5, 16384], [4096, 16384], [16384]], ["AAAA"] * 5]
    path = write(tmp_path, parts)
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="base64 characters"):
        sketch_model.load_model(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5 << 20


def test_two_gigabyte_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.gen.json"
    with open(path, "wb") as f:
        f.truncate(2 << 30)  # sparse: no disk used
    with pytest.raises(ModelFileError, match="bytes, more than"):
        sketch_model.load_model(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifo_and_directory_are_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.gen.json")
    with pytest.raises(ModelFileError, match="not a regular file"):
        sketch_model.load_model(tmp_path / "pipe.gen.json")
    with pytest.raises(ModelFileError):
        sketch_model.load_model(tmp_path / "missing.gen.json")


def test_read_keeps_info_and_kind():
    weights, meta = read_sketchrnn_js(google_file("dog"))
    assert meta["kind"] == "gen" and meta["name"] == "dog" and meta["version"] == 6
    assert weights.arrays["decoder/W_xh"].shape == (5, 2048)
