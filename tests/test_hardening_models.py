"""Hardening: model directories that are missing, corrupt, from another version, hostile, or
still being written by a live training job; and drawings a loaded model cannot take.

`sketch_model.load_model` must answer every one of them with ModelFileError (a SketchError)
and a readable message, never run code from the file, and never crash.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from sketch_model import HParams, ModelFileError, SketchError, Sketcher, load_model
from sketch_model import train as train_module
from sketch_model.errors import DrawingError
from sketch_model.model import build_model
from sketch_model.strokes import fit_to_model

ROOT = Path(__file__).resolve().parents[1]
SHEEP = ROOT / "assets" / "data" / "aaron_sheep.npz"
TINY = HParams(dec_rnn_size=32, enc_rnn_size=16, z_size=8, num_mixture=3, batch_size=8,
               max_seq_len=20)
TINY_TRAIN = ["--set", "dec_rnn_size=32", "--set", "enc_rnn_size=16", "--set", "z_size=8",
              "--set", "num_mixture=3", "--set", "batch_size=8", "--set", "save_every=5",
              "--set", "bucket_width=250"]
LINE = np.array([[5, 5, 0], [10, 0, 0], [0, 10, 1]], np.float32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A complete model directory of a tiny untrained VAE, written as training writes it."""
    path = tmp_path_factory.mktemp("tiny")
    train_module.save_model(path, build_model(TINY))
    TINY.save(path / "hparams.json")
    (path / "dataset.json").write_text(json.dumps({"scale_factor": 15.0}))
    return path


@pytest.fixture
def model_dir(tiny_dir, tmp_path) -> Path:
    """A fresh copy of the tiny model directory for a test to break."""
    return Path(shutil.copytree(tiny_dir, tmp_path / "model"))


@pytest.fixture(scope="module")
def sketcher(tiny_dir) -> Sketcher:
    return load_model(tiny_dir)


def refused(path: Path, match: str | None = None) -> str:
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    message = str(info.value)
    assert message.strip()
    return message


def test_the_tiny_model_loads(tiny_dir):
    assert isinstance(load_model(tiny_dir), Sketcher)


# --- missing and corrupt ------------------------------------------------------------------

def test_missing_directory_and_files(model_dir, tmp_path):
    refused(tmp_path / "nowhere", match="not a model directory")
    refused(model_dir / "model.keras", match="not a model directory")  # a file, not a dir
    for name, match in (("dataset.json", "dataset.json"), ("hparams.json", "hparams.json"),
                        ("model.keras", "no model.keras")):
        broken = Path(shutil.copytree(model_dir, tmp_path / f"without-{name}"))
        (broken / name).unlink()
        refused(broken, match=match)


def _keras_variants(original: bytes, tmp: Path) -> dict[str, bytes]:
    """Corrupt versions of a .keras file (a zip of config.json, metadata and weights)."""
    variants = {"empty": b"", "text": b"hello, I am not a model",
                "a PNG": b"\x89PNG\r\n\x1a\n" + b"\0" * 100}
    for fraction in (0.1, 0.5, 0.9, 0.999):
        variants[f"truncated to {fraction:.0%}"] = original[:int(len(original) * fraction)]
    middle = bytearray(original)
    for offset in range(len(middle) // 3, len(middle) // 3 + 64):
        middle[offset] ^= 0xFF
    variants["64 bytes flipped in the weights"] = bytes(middle)

    def rezip(change) -> bytes:
        target = tmp / "rezip.keras"
        with zipfile.ZipFile(tmp / "orig.keras") as src, zipfile.ZipFile(target, "w") as dst:
            for name in src.namelist():
                data = change(name, src.read(name))
                if data is not None:
                    dst.writestr(name, data)
        return target.read_bytes()

    (tmp / "orig.keras").write_bytes(original)
    variants["no weights"] = rezip(lambda n, d: None if n.endswith(".h5") else d)
    variants["no config"] = rezip(lambda n, d: None if n == "config.json" else d)
    variants["config not JSON"] = rezip(lambda n, d: b"{nope" if n == "config.json" else d)
    variants["config a list"] = rezip(lambda n, d: b"[1, 2]" if n == "config.json" else d)
    variants["weights garbage"] = rezip(lambda n, d: b"\0" * 512 if n.endswith(".h5") else d)
    variants["weights truncated"] = rezip(lambda n, d: d[:len(d) // 2] if n.endswith(".h5") else d)

    def edit_hparams(**changes):
        def change(name, data):
            if name != "config.json":
                return data
            config = json.loads(data)
            config["config"]["hparams"].update(changes)
            return json.dumps(config).encode()
        return rezip(change)

    variants["inner hparams format 2"] = edit_hparams(format_version=2)
    variants["inner hparams unknown key"] = edit_hparams(flux_capacitor=True)
    variants["inner hparams of another size"] = edit_hparams(z_size=16)
    variants["inner hparams invalid"] = edit_hparams(dec_model="gru")
    return variants


def test_corrupt_model_keras_is_refused(model_dir, tmp_path):
    original = (model_dir / "model.keras").read_bytes()
    variants = _keras_variants(original, tmp_path)
    assert len(variants) == 18
    for name, data in variants.items():
        (model_dir / "model.keras").write_bytes(data)
        message = refused(model_dir)
        assert "model.keras" in message, name


def test_a_keras_file_of_another_model_is_refused(model_dir):
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save(model_dir / "model.keras")
    refused(model_dir, match="not a sketch_model")


# --- other and future versions ------------------------------------------------------------

HPARAMS_VARIANTS = {
    "format_version 2": {"format_version": 2},
    "format_version missing": {"format_version": None},
    "format_version a string": {"format_version": "1"},
    "unknown keys": {"flux_capacitor": 1.21, "dec_rnn_size": 32},
    "invalid value": {"dec_model": "gru"},
    "wrong type": {"z_size": "eight"},
    "zero size": {"z_size": 0},
}


@pytest.mark.parametrize("name", sorted(HPARAMS_VARIANTS))
def test_hparams_from_another_or_a_future_version_are_refused(model_dir, name):
    data = json.loads((model_dir / "hparams.json").read_text())
    for key, value in HPARAMS_VARIANTS[name].items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    (model_dir / "hparams.json").write_text(json.dumps(data))
    message = refused(model_dir, match="hparams")
    if "version" in name:
        assert "version" in message


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", "null", "\xff\xfe", '"hparams"'])
def test_hparams_json_that_is_not_an_object_is_refused(model_dir, content):
    (model_dir / "hparams.json").write_bytes(content.encode("latin1"))
    refused(model_dir, match="hparams.json")


@pytest.mark.parametrize("content", ["", "{}", '{"scale_factor": "abc"}', '{"scale_factor": null}',
                                     "[15.0]", "{nope"])
def test_unreadable_dataset_json_is_refused(model_dir, content):
    (model_dir / "dataset.json").write_text(content)
    refused(model_dir, match="dataset.json")


@pytest.mark.parametrize("factor", [0, -1.0, "nan", "inf", 1e-320])
def test_a_scale_factor_that_is_not_a_positive_number_is_refused(model_dir, factor):
    (model_dir / "dataset.json").write_text(json.dumps({"scale_factor": factor}))
    refused(model_dir, match="scale_factor")


def test_model_keras_whose_hparams_differ_from_hparams_json_is_refused(model_dir):
    path = model_dir / "model.keras"
    with zipfile.ZipFile(path) as src:
        files = {name: src.read(name) for name in src.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["hparams"]["max_seq_len"] = 400  # same weights, another model
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in files.items():
            dst.writestr(name, data)
    refused(model_dir, match="hparams")


# --- files that carry code ----------------------------------------------------------------

def _lambda_model(marker: Path) -> keras.Model:
    """A Keras model whose Lambda layer creates `marker` whenever it runs."""
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Lambda(touch)(inputs))


def _rewrite_config(path: Path, change) -> None:
    """Rewrite the config.json inside a .keras file with change(config)."""
    with zipfile.ZipFile(path) as src:
        files = {name: src.read(name) for name in src.namelist()}
    config = change(json.loads(files["config.json"]))
    files["config.json"] = config if isinstance(config, str) else json.dumps(config)
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in files.items():
            dst.writestr(name, data)


def _with_our_hparams(config: dict) -> dict:
    """`config` carrying the directory's own hparams, so that it passes load_model's check of
    them and reaches Keras' deserialisation (and its safe mode)."""
    if isinstance(config.get("config"), dict):
        config["config"]["hparams"] = TINY.to_dict()
    return config


def test_keras_file_with_a_lambda_is_refused_and_the_lambda_never_runs(model_dir, tmp_path):
    marker = tmp_path / "lambda-ran"
    keras_file = model_dir / "model.keras"
    _lambda_model(marker).save(keras_file)
    marker.unlink(missing_ok=True)  # building the model ran it once, here
    refused(model_dir)  # its config is not a sketch_model one
    assert not marker.exists(), "load_model ran the file's code"
    # The same file dressed up with this directory's hparams gets as far as Keras, whose safe
    # mode refuses the lambda.
    _rewrite_config(keras_file, _with_our_hparams)
    message = refused(model_dir, match="could not be loaded safely")
    assert "lambda" in message.lower()
    assert not marker.exists(), "load_model ran the file's code"
    # The control: the file does carry live code, which only an unsafe load runs.
    keras.saving.load_model(keras_file, safe_mode=False)(np.zeros((1, 3)))
    assert marker.exists()


@pytest.mark.parametrize("config", [
    {"module": "os", "class_name": "system", "config": {"command": "touch MARKER"},
     "registered_name": None},
    {"module": "os", "class_name": "function", "config": "system", "registered_name": None},
    {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": None},
    {"module": "subprocess", "class_name": "Popen", "config": {"args": ["touch", "MARKER"]},
     "registered_name": None},
])
def test_config_naming_arbitrary_python_is_refused(model_dir, tmp_path, config):
    marker = tmp_path / "MARKER"
    text = json.dumps(_with_our_hparams(config)).replace("MARKER", str(marker))
    _rewrite_config(model_dir / "model.keras", lambda _: text)
    refused(model_dir, match="could not be loaded safely|not a sketch_model")
    assert not marker.exists()


# --- drawings a model cannot take ---------------------------------------------------------

def test_sketcher_refuses_empty_and_overlong_drawings_and_fit_to_model_fixes_the_latter(sketcher):
    for call in (sketcher.complete, sketcher.encode, sketcher.reconstruct):
        with pytest.raises(SketchError, match="empty"):
            call(np.zeros((0, 3)))
    long = np.tile(LINE, (10, 1))  # 30 points, max_seq_len is 20
    for call in (sketcher.complete, sketcher.encode, sketcher.reconstruct):
        with pytest.raises(SketchError, match="fit_to_model"):
            call(long)
    fitted, message = fit_to_model(long, sketcher.hps.max_seq_len)
    assert len(fitted) <= 20 and message
    (result,) = sketcher.complete(fitted, seed=0)
    np.testing.assert_array_equal(result[:len(fitted)], fitted)


def test_sketcher_takes_one_click_and_points_far_outside_the_canvas(sketcher):
    for drawing in ([[50, 50, 1]], [[49.995, 50, 0], [0.01, 0, 1]],
                    [[1e6, -1e6, 0], [10, 10, 0], [10, -10, 1]],
                    [[3e38, -3e38, 0], [3e38, 10, 1]]):
        (result,) = sketcher.complete(drawing, seed=1)
        assert np.all(np.isfinite(result)) and len(result) >= len(drawing)
        assert np.all(np.isfinite(sketcher.encode(drawing)))


@pytest.mark.parametrize("bad", [[[np.nan, 0, 1]], [[np.inf, 0, 1]], [[1, 2]], [[1, 2, 3]],
                                 "abc", None, [[1e39, 0, 1]], [[10**400, 0, 1]]])
def test_sketcher_refuses_malformed_drawings_with_drawing_error(sketcher, bad):
    with pytest.raises(DrawingError):
        sketcher.complete(bad)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("call", ["generate-temperature-inf", "pen_temperature=0",
                                  "pen_temperature=nan", "pen_temperature=True", "decode-nan",
                                  "decode-inf"])
def test_non_finite_parameters_are_refused(sketcher, call):
    with pytest.raises(SketchError, match="temperature" if "temperature" in call else "latent"):
        if call == "generate-temperature-inf":
            drawings = sketcher.generate(2, temperature=float("inf"), seed=0)
        elif call.startswith("pen_temperature"):
            value = {"0": 0.0, "nan": float("nan"), "True": True}[call.split("=")[1]]
            drawings = sketcher.complete(LINE, n=2, seed=0, pen_temperature=value)
        else:
            drawings = [sketcher.decode(np.full(8, np.nan if call == "decode-nan" else np.inf),
                                        seed=0)]
        assert all(np.all(np.isfinite(d)) for d in drawings), "non-finite drawing returned"


@pytest.mark.parametrize("call", ["n=-1", "n=2.5", "seed=-1", "seed='a'", "steps=2.5",
                                  "decode('abc')"])
def test_bad_counts_and_seeds_raise_sketch_error(sketcher, call):
    with pytest.raises(SketchError):
        if call == "steps=2.5":
            sketcher.interpolate(LINE, LINE, steps=2.5)
        elif call == "decode('abc')":
            sketcher.decode("abc")
        else:
            sketcher.generate(**{call.split("=")[0]: eval(call.split("=")[1])})


# --- a run directory still being written --------------------------------------------------

def test_loading_while_a_live_training_job_writes_never_sees_a_broken_file(tmp_path):
    """model.keras is replaced atomically: a reader loading in a loop while a short training
    run writes it gets either a whole model or a clear ModelFileError."""
    run_dir = tmp_path / "live"
    job = subprocess.Popen(
        [sys.executable, "-m", "sketch_model", "train", str(SHEEP), "--out", str(run_dir),
         "--steps", "20", *TINY_TRAIN],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    loaded, refusals, versions = 0, [], set()
    deadline = time.monotonic() + 170
    try:
        while job.poll() is None and time.monotonic() < deadline:
            try:
                sketcher = load_model(run_dir)
            except ModelFileError as err:
                refusals.append(str(err))
                time.sleep(0.05)
                continue
            assert sketcher.hps.dec_rnn_size == 32
            loaded += 1
            stat = (run_dir / "model.keras").stat()
            versions.add((stat.st_ino, stat.st_mtime_ns))
    finally:
        if job.poll() is None:
            job.kill()
        stderr = job.communicate()[1].decode(errors="replace")
    assert job.returncode == 0, stderr[-2000:]
    assert loaded >= 2, f"only {loaded} loads while the job ran"
    assert len(versions) >= 2, "the reader never overlapped a rewrite of model.keras"
    print(f"{loaded} loads of {len(versions)} versions of model.keras, {len(refusals)} refusals")
    for message in refusals:  # only "not there yet", never a half-written file
        assert any(text in message for text in ("not a model directory", "no model.keras",
                                                "dataset.json")), message
    assert not list(run_dir.glob(".*.tmp*")), "temporary files left behind"
    assert isinstance(load_model(run_dir), Sketcher)
