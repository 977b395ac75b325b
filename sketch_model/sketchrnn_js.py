"""Google's sketch-rnn-js model format: read Google's pretrained models, write ours.

A file is a JSON list `[info, dims, blobs]`. `info` holds at least `mode` (0 or 1 or "vae": a
VAE; 2 or "gen": decoder only), `max_seq_len` and `scale_factor`, often `version` and `name`,
and sometimes other keys. `blobs` are base64 strings of little-endian int16, one per array of
`dims`, each weight being int16 * 10 / 32767. The arrays, in order:

    gen: head W (H, 3+6M), head b, decoder W_xh (5, 4H), W_hh (H, 4H), bias (4H)
    vae: encoder forward W_xh (5, 4E), W_hh (E, 4E), bias; encoder backward the same;
         mu W (2E, Z), b; presig W (2E, Z), b; z -> initial state W (Z, 2H), b;
         then the gen arrays, the decoder's W_xh being (5+Z, 4H)

The cells are the reference LSTM (gates i, j, f, o, forget bias 1), as ours. Two conventions
differ from this library's: the initial state is laid out (c, h) where ours is (h, c), and VAEs
before version 6 pass z through tanh. sketch-rnn-js feeds a canvas pixel as 2 data units
(pixel_factor 2); here inputs and outputs are the model's data units, as for our own models.

Every check on a file happens before its weights are decoded, so a hostile file costs no more
memory than its own size, which is bounded too.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from pathlib import Path

import numpy as np

from .config import HParams
from .errors import ModelFileError, SketchError
from .files import atomic_write, open_regular
from .sample import ModelWeights, Sketcher

MAX_FILE_BYTES = 64 << 20  # Google's largest files (1024-unit VAEs) are about 20 MB
MAX_UNITS = 4096
MAX_DIM = 5 * MAX_UNITS  # the widest array: 4 gates of MAX_UNITS, or 5 + a z of MAX_UNITS
MAX_SEQ_LEN = 10_000
WEIGHT_LIMIT = 10.0  # weights were clipped to [-10, 10] and stored as int16 * 10 / 32767
QUANT_STEPS = 32767
NUM_MIXTURE = 20  # sketch-rnn-js and @magenta/sketch read exactly 20 mixture components
# The longest side of a typical drawing of Google's Quick, Draw! models, in their data units,
# for files that do not say: across the 23 shared models, the median of each model's median
# over 25 finished samples at temperature 0.3 was 868 (per model 660 to 1,682). Our exported
# files record their own.
GOOGLE_DRAWING_SIZE = 850.0
MODES = {0: "vae", 1: "vae", 2: "gen", "vae": "vae", "gen": "gen"}
GEN_NAMES = ["mixture_head/kernel", "mixture_head/bias",
             "decoder/W_xh", "decoder/W_hh", "decoder/bias"]
VAE_NAMES = [f"{cell}/{w}" for cell in ("enc_fw", "enc_bw") for w in ("W_xh", "W_hh", "bias")] + [
    "mu/kernel", "mu/bias", "presig/kernel", "presig/bias",
    "initial_state/kernel", "initial_state/bias"] + GEN_NAMES


def _fail(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path} is not a sketch-rnn-js model file: {why}")


def _read_json(path: Path) -> object:
    try:
        info = os.stat(path)
    except OSError as err:
        raise ModelFileError(f"{path} cannot be read ({err.strerror})") from None
    if not path.is_file():
        raise _fail(path, "not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise _fail(path, f"{info.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} any "
                          "published model needs")
    try:
        with open_regular(path, MAX_FILE_BYTES) as f:
            text = f.read(info.st_size + 1)  # read(n) reserves n bytes up front
        return json.loads(text)
    except OSError as err:
        raise ModelFileError(f"{path} cannot be read ({err.strerror})") from None
    except (ValueError, RecursionError) as err:
        raise _fail(path, f"not valid JSON ({err})") from None


def _positive_int(value: object, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


def _expected_shapes(kind: str, dims: list) -> tuple[dict[str, tuple], int, int, int]:
    """The shape each array must have, given the sizes the file's own dims imply, and
    (H, M, Z); raises ValueError naming the first inconsistency."""
    names = VAE_NAMES if kind == "vae" else GEN_NAMES
    if len(dims) != len(names):
        raise ValueError(f"a {kind} model has {len(names)} arrays, this one lists {len(dims)}")
    for i, d in enumerate(dims):
        if (not isinstance(d, list) or len(d) not in (1, 2)
                or not all(_positive_int(n, MAX_DIM) for n in d)):
            raise ValueError(f"dims[{i}] is {d!r}, not a list of one or two sizes")
    shapes = dict(zip(names, (tuple(d) for d in dims)))
    head = shapes["mixture_head/kernel"]
    if len(head) != 2 or (head[1] - 3) % 6 or head[1] < 9:
        raise ValueError(f"the output layer is {head}, not (units, 3 + 6 x mixtures)")
    units, mixtures = head[0], (head[1] - 3) // 6
    z = shapes["initial_state/kernel"][0] if kind == "vae" else 0
    want = {"mixture_head/kernel": (units, 3 + 6 * mixtures), "mixture_head/bias": (3 + 6 * mixtures,),
            "decoder/W_xh": (5 + z, 4 * units), "decoder/W_hh": (units, 4 * units),
            "decoder/bias": (4 * units,)}
    if kind == "vae":
        enc = shapes["enc_fw/W_hh"][0]
        for cell in ("enc_fw", "enc_bw"):
            want |= {f"{cell}/W_xh": (5, 4 * enc), f"{cell}/W_hh": (enc, 4 * enc),
                     f"{cell}/bias": (4 * enc,)}
        want |= {"mu/kernel": (2 * enc, z), "mu/bias": (z,), "presig/kernel": (2 * enc, z),
                 "presig/bias": (z,), "initial_state/kernel": (z, 2 * units),
                 "initial_state/bias": (2 * units,)}
        if not (_positive_int(enc, MAX_UNITS) and _positive_int(z, MAX_UNITS)):
            raise ValueError(f"encoder size {enc} or z size {z} is out of range")
    if not _positive_int(units, MAX_UNITS):
        raise ValueError(f"{units} decoder units is out of range (1 to {MAX_UNITS})")
    for name in names:
        if shapes[name] != want[name]:
            raise ValueError(f"{name} is {shapes[name]}, expected {want[name]}")
    return want, units, mixtures, z


def _decode_blob(blob: object, shape: tuple, name: str) -> np.ndarray:
    count = math.prod(shape)
    if not isinstance(blob, str):
        raise ValueError(f"the weights of {name} are not a base64 string")
    if len(blob) != 4 * math.ceil(2 * count / 3):
        raise ValueError(f"the weights of {name} hold {len(blob)} base64 characters; "
                         f"{shape} needs {4 * math.ceil(2 * count / 3)}")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the weights of {name} are not valid base64") from None
    if len(raw) != 2 * count:
        raise ValueError(f"the weights of {name} decode to {len(raw)} bytes, not {2 * count}")
    q = np.frombuffer(raw, dtype="<i2").astype(np.float32)
    return (q * (WEIGHT_LIMIT / QUANT_STEPS)).reshape(shape)


def _info_fields(info: object) -> tuple[str, int, float, float]:
    """(kind, max_seq_len, scale_factor, version) from the info object."""
    if not isinstance(info, dict):
        raise ValueError("its first element is not an info object")
    mode = info.get("mode")
    if isinstance(mode, bool) or mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of 0, 1, 2, 'vae', 'gen'")
    max_seq_len = info.get("max_seq_len")
    if not _positive_int(max_seq_len, MAX_SEQ_LEN):
        raise ValueError(f"max_seq_len {max_seq_len!r} is not a whole number from 1 to {MAX_SEQ_LEN}")
    scale = info.get("scale_factor")
    if (isinstance(scale, bool) or not isinstance(scale, (int, float))
            or not 1e-6 < scale < 1e9):
        raise ValueError(f"scale_factor {scale!r} is not a positive finite number")
    version = info.get("version", 6)
    if isinstance(version, bool) or not isinstance(version, (int, float)) or not math.isfinite(version):
        raise ValueError(f"version {version!r} is not a number")
    return MODES[mode], max_seq_len, float(scale), float(version)


def read_sketchrnn_js(path: str | Path) -> tuple[ModelWeights, dict]:
    """The weights and info of a sketch-rnn-js file; ModelFileError if it is not one."""
    path = Path(path)
    data = _read_json(path)
    try:
        if not isinstance(data, list) or len(data) != 3:
            raise ValueError("it is not a JSON list [info, dims, blobs]")
        info, dims, blobs = data
        kind, max_seq_len, scale, version = _info_fields(info)
        if not isinstance(dims, list) or not isinstance(blobs, list):
            raise ValueError("dims and blobs are not lists")
        shapes, units, mixtures, z = _expected_shapes(kind, dims)
        if len(blobs) != len(shapes):
            raise ValueError(f"{len(dims)} arrays are listed but {len(blobs)} are given")
        names = VAE_NAMES if kind == "vae" else GEN_NAMES
        arrays = {name: _decode_blob(blob, shapes[name], name) for name, blob in zip(names, blobs)}
    except ValueError as err:
        raise _fail(path, str(err)) from None
    if kind == "vae":  # the file's initial state is (c, h); ours is (h, c)
        for name in ("initial_state/kernel", "initial_state/bias"):
            c, h = np.split(arrays[name], 2, axis=-1)
            arrays[name] = np.concatenate([h, c], axis=-1)
    enc = arrays["enc_fw/W_hh"].shape[0] if kind == "vae" else 1
    hps = HParams(conditional=kind == "vae", dec_model="lstm", enc_model="lstm",
                  dec_rnn_size=units, enc_rnn_size=enc, z_size=max(z, 1), num_mixture=mixtures,
                  max_seq_len=max_seq_len, use_recurrent_dropout=False)
    meta = {"format": "sketch-rnn-js", "kind": kind, "version": version, "scale_factor": scale,
            **{k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))}}
    return ModelWeights(hps, arrays), meta


def load_sketchrnn_js(path: str | Path) -> Sketcher:
    """A sketch-rnn-js file as a Sketcher: the same API and numpy sampling as our models."""
    path = Path(path)
    weights, meta = read_sketchrnn_js(path)
    size = meta.get("drawing_size")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < math.inf:
        size = GOOGLE_DRAWING_SIZE
    return Sketcher(weights, meta["scale_factor"], path, {"sketchrnn_js": meta},
                    drawing_size=float(size),
                    squash_latent=meta["kind"] == "vae" and meta["version"] < 6)


def _quantise(array: np.ndarray) -> str:
    q = np.round(np.clip(array, -WEIGHT_LIMIT, WEIGHT_LIMIT) * (QUANT_STEPS / WEIGHT_LIMIT))
    return base64.b64encode(q.astype("<i2").tobytes()).decode("ascii")


def exportable(hps: HParams) -> None:
    """Raise SketchError saying why a model cannot be written in the sketch-rnn-js format."""
    cells = [("decoder", hps.dec_model)] + ([("encoder", hps.enc_model)] if hps.conditional else [])
    for part, cell in cells:
        if cell != "lstm":
            raise SketchError(f"the {part} is a {cell} cell; the sketch-rnn-js format holds only "
                              "plain LSTM cells (no layer norm, no hypernetwork), so sketch-rnn-js "
                              "and @magenta/sketch could not run it")
    if hps.position_input:
        raise SketchError("the decoder reads the pen's position (position_input); sketch-rnn-js "
                          "feeds it only the moves, so it could not run this model")
    if hps.conditional and hps.encode_prefix_prob > 0:
        raise SketchError("the encoder reads a whole drawing with its end marked "
                          "(encode_prefix_prob); sketch-rnn-js reads a pen lift there, so its "
                          "z of a whole drawing would be that of a started one")
    if hps.num_mixture != NUM_MIXTURE:
        raise SketchError(f"the model has {hps.num_mixture} mixture components; sketch-rnn-js and "
                          f"@magenta/sketch read exactly {NUM_MIXTURE}")


def export_sketchrnn_js(sketcher: Sketcher, out: str | Path, name: str | None = None) -> dict:
    """Write a model as a sketch-rnn-js file: `.gen.json` for a decoder-only model, `.vae.json`
    for a VAE. The weights are clipped to [-10, 10] and rounded to int16 steps of 10/32767
    (about 3e-4), as the format requires. Returns the info object written, with what the
    rounding did: `clipped` weights and the `largest_change` of any weight."""
    hps, out = sketcher.hps, Path(out)
    kind = "vae" if hps.conditional else "gen"
    if not out.name.endswith(f".{kind}.json"):
        raise SketchError(f"this model is a {'VAE' if kind == 'vae' else 'decoder-only model'}: "
                          f"name the file {out.name.split('.')[0]}.{kind}.json, not {out.name}")
    exportable(hps)
    arrays = dict(sketcher.weights.arrays)
    if kind == "vae":
        for key in ("initial_state/kernel", "initial_state/bias"):
            h, c = np.split(arrays[key], 2, axis=-1)
            arrays[key] = np.concatenate([c, h], axis=-1)
    names = VAE_NAMES if kind == "vae" else GEN_NAMES
    info = {"mode": 0 if kind == "vae" else 2, "version": 6, "max_seq_len": hps.max_seq_len,
            "name": name or (sketcher.path.name if sketcher.path else out.name.split(".")[0]),
            "scale_factor": sketcher.scale_factor}
    if sketcher.drawing_size is not None:
        info["drawing_size"] = sketcher.drawing_size
    content = [info, [list(arrays[n].shape) for n in names], [_quantise(arrays[n]) for n in names]]
    step = WEIGHT_LIMIT / QUANT_STEPS
    clipped = sum(int(np.sum(np.abs(arrays[n]) > WEIGHT_LIMIT)) for n in names)
    change = max(float(np.max(np.abs(np.round(np.clip(arrays[n], -WEIGHT_LIMIT, WEIGHT_LIMIT) / step)
                                      * step - arrays[n]))) for n in names)
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(content)))
    return {**info, "clipped": clipped, "largest_change": change}
