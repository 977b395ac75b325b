"""Sampling: the API the app uses on a loaded model (generate, complete, reconstruct, encode,
decode, interpolate).

Sampling is sequential, one point at a time, so it runs in numpy on the model's weights rather
than through the Keras graph: a step costs a few small matrix products instead of a framework
call. tests/test_model.py checks that this path gives the same numbers as the Keras model.
All inputs and outputs are stroke-3 arrays in drawing units; the scale factor is inside.

Temperature tau follows the paper for the drawing's shape: the mixture weights' logits are
divided by tau and each Gaussian's variance is multiplied by it. The pen state is sampled at
its own `pen_temperature`, 1 by default: at the paper's convention (pen_temperature = tau) a
lift or an end the model gives 0.3 becomes about 0.06 at tau = 0.3, so strokes run on and many
drawings never end. Pass pen_temperature=temperature for the paper's sampling.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
from keras import ops

from .cells import LN_EPSILON
from .config import PEN_TEMPERATURE, HParams
from .datasets import START_TOKEN
from .errors import ModelFileError, SketchError
from .losses import CORR_LIMIT, LOG_SIGMA_LIMIT
from .model import POSITION_SCALE, SketchRNN
from .strokes import as_stroke3, stroke3_to_stroke5

MAX_CONFIG_BYTES = 1 << 20  # a .keras config of ours is about 2 kB


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int) -> np.ndarray:
    xs = x.reshape(x.shape[0], groups, -1)
    mean = xs.mean(axis=-1, keepdims=True)
    var = np.square(xs - mean).mean(axis=-1, keepdims=True)
    return ((xs - mean) / np.sqrt(var + LN_EPSILON)).reshape(x.shape) * gamma + beta


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class NumpyCell:
    """One recurrent cell's step in numpy, with the weights of a cells.py layer."""

    def __init__(self, layer) -> None:
        self.kind = type(layer).__name__
        self.layer_norm = getattr(layer, "layer_norm", True)
        self.w = {v.path.split("/")[-1]: ops.convert_to_numpy(v) for v in layer.weights}
        self.units = layer.units
        self.state_size = layer.state_size

    def split_state(self, flat: np.ndarray) -> tuple:
        if self.kind == "HyperLSTMCell":
            u, k = self.units, (self.state_size // 2) - self.units
            return (flat[:, :u], flat[:, u:2 * u], flat[:, 2 * u:2 * u + k], flat[:, 2 * u + k:])
        return tuple(np.split(flat, 2, axis=-1))

    def zero_state(self, batch: int) -> tuple:
        return self.split_state(np.zeros((batch, self.state_size), np.float32))

    def project_inputs(self, x: np.ndarray) -> tuple:
        w = self.w
        if self.kind == "HyperLSTMCell":
            return (x @ w["W_xh"], x @ w["hyper_W_xh"] + w["hyper_bias"])
        return (x @ w["W_xh"],) if self.layer_norm else (x @ w["W_xh"] + w["bias"],)

    def step(self, state: tuple, projected: tuple) -> tuple:
        w = self.w
        if self.kind == "HyperLSTMCell":
            return self._hyper_step(state, projected)
        h, c = state
        z = projected[0] + h @ w["W_hh"]
        if self.layer_norm:
            z = _layer_norm(z, w["ln_gamma"], w["ln_beta"], 4)
        i, j, f, o = np.split(z, 4, axis=-1)
        c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
        c_out = _layer_norm(c, w["ln_c_gamma"], w["ln_c_beta"], 1) if self.layer_norm else c
        return (np.tanh(c_out) * _sigmoid(o), c)

    def _hyper_step(self, state: tuple, projected: tuple) -> tuple:
        w = self.w
        h, c, hh, hc = state
        xw, hyper_xw = projected
        zh = hyper_xw + h @ w["hyper_W_hmain"] + hh @ w["hyper_W_hh"]
        hi, hj, hf, ho = np.split(zh, 4, axis=-1)
        hc = hc * _sigmoid(hf + 1.0) + _sigmoid(hi) * np.tanh(hj)
        hh = np.tanh(hc) * _sigmoid(ho)
        batch, e, u = h.shape[0], w["zw"].shape[1] // 8, self.units
        zw = (hh @ w["zw"] + w["zw_bias"]).reshape(batch, 8, e)
        scale = np.einsum("bge,geu->bgu", zw, w["alpha"])
        shift = np.einsum("bge,geu->bgu", (hh @ w["zb"]).reshape(batch, 4, e), w["beta"])
        x_part = xw.reshape(batch, 4, u) * scale[:, :4]
        h_part = (h @ w["W_hh"]).reshape(batch, 4, u) * scale[:, 4:] + shift
        z = (x_part + h_part).reshape(batch, 4 * u) + w["bias"]
        z = _layer_norm(z, w["ln_gamma"], w["ln_beta"], 4)
        i, j, f, o = np.split(z, 4, axis=-1)
        c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
        h = np.tanh(_layer_norm(c, w["ln_c_gamma"], w["ln_c_beta"], 1)) * _sigmoid(o)
        return (h, c, hh, hc)

    def run(self, x: np.ndarray, state: tuple) -> tuple[tuple, np.ndarray]:
        """Run over x (B, T, D); returns (final state, h of every step (B, T, units))."""
        projected = self.project_inputs(x)
        outputs = []
        for t in range(x.shape[1]):
            state = self.step(state, tuple(p[:, t] for p in projected))
            outputs.append(state[0])
        return state, np.stack(outputs, axis=1) if outputs else np.zeros((x.shape[0], 0, self.units))


def _linear(layer) -> tuple[np.ndarray, np.ndarray]:
    return ops.convert_to_numpy(layer.kernel), ops.convert_to_numpy(layer.bias)


def latent_path(za: np.ndarray, zb: np.ndarray, steps: int, method: str = "slerp") -> np.ndarray:
    """`steps` latent vectors from za to zb (both ends included), spherical or linear."""
    if steps < 2:
        raise SketchError(f"an interpolation needs at least 2 steps, not {steps}")
    if method not in ("slerp", "linear"):
        raise SketchError(f"interpolation method must be slerp or linear, not {method!r}")
    za, zb = np.asarray(za, np.float64), np.asarray(zb, np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "slerp":
        cos = np.dot(za, zb) / max(np.linalg.norm(za) * np.linalg.norm(zb), 1e-12)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        if omega > 1e-6:
            return ((np.sin((1 - t) * omega) * za + np.sin(t * omega) * zb) / np.sin(omega)).astype(np.float32)
    return ((1 - t) * za + t * zb).astype(np.float32)


def _count(n, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SketchError(f"{what} must be a whole number of at least 1, not {n!r}")
    return int(n)


def _rng(seed) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise SketchError(f"seed must be a non-negative whole number or None, not {seed!r}")
    return np.random.default_rng(seed)


class Sketcher:
    """A trained model ready to draw: wraps a SketchRNN and its data scale factor."""

    def __init__(self, model: SketchRNN, scale_factor: float, path: Path | None = None,
                 info: dict | None = None) -> None:
        self.model = model
        self.hps: HParams = model.hps
        self.scale_factor = float(scale_factor)
        self.path = path
        self.info = info or {}
        self.decoder = NumpyCell(model.decoder)
        self.head = _linear(model.head)
        if self.hps.conditional:
            self.enc_fw, self.enc_bw = NumpyCell(model.enc_fw), NumpyCell(model.enc_bw)
            self.to_mu, self.to_state = _linear(model.to_mu), _linear(model.to_state)

    @property
    def conditional(self) -> bool:
        return self.hps.conditional

    @property
    def card(self) -> dict:
        """What the model directory says about the model: hparams, data, training, test losses."""
        return {"name": self.path.name if self.path else "(in memory)",
                "hparams": self.hps.to_dict(), **self.info}

    # --- drawing units <-> model units -------------------------------------------------------

    def _to_model(self, sketch) -> np.ndarray:
        s3 = as_stroke3(sketch)
        if len(s3) == 0:
            raise SketchError("the drawing is empty")
        if len(s3) > self.hps.max_seq_len:
            raise SketchError(f"the drawing has {len(s3)} points; this model takes at most "
                              f"{self.hps.max_seq_len} (simplify it with fit_to_model)")
        s3[:, 0:2] /= self.scale_factor
        return s3

    def _to_drawing(self, s3: np.ndarray) -> np.ndarray:
        out = s3.astype(np.float32).copy()
        out[:, 0:2] *= self.scale_factor
        return out

    # --- latent space ------------------------------------------------------------------------

    def _require_vae(self, what: str) -> None:
        if not self.conditional:
            raise SketchError(f"{what} needs a conditional (VAE) model; this one is unconditional")

    def encode_many(self, sketches: list, chunk: int = 128) -> np.ndarray:
        """Latent means mu (n, z_size) of the drawings, in their order. They are encoded
        `chunk` at a time, sorted by length so that each batch needs little padding."""
        self._require_vae("encoding")
        chunk = _count(chunk, "chunk")
        model_units = [self._to_model(s) for s in sketches]
        order = np.argsort([len(s) for s in model_units], kind="stable")
        mu = np.zeros((len(model_units), self.hps.z_size), np.float32)
        for start in range(0, len(order), chunk):
            rows = order[start:start + chunk]
            mu[rows] = self._encode_batch([model_units[i] for i in rows])
        return mu

    def _encode_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        """mu of stroke-3 drawings (model units) padded to the longest: the backward LSTM reads
        each drawing reversed within its own length, so in both directions the padding comes
        after the drawing's steps and its final h is read at its own last step."""
        lengths = np.array([len(s) for s in batch])
        x = np.stack([stroke3_to_stroke5(s, lengths.max()) for s in batch])
        steps = np.arange(x.shape[1])
        backward = np.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        zero = self.enc_fw.zero_state(len(batch))
        _, fw = self.enc_fw.run(x, zero)
        _, bw = self.enc_bw.run(np.take_along_axis(x, backward[..., None], axis=1), zero)
        rows, last = np.arange(len(batch)), lengths - 1
        last_h = np.concatenate([fw[rows, last], bw[rows, last]], axis=-1)
        return last_h @ self.to_mu[0] + self.to_mu[1]

    def encode(self, sketch) -> np.ndarray:
        """The latent mean mu (z_size,) of one drawing."""
        return self.encode_many([sketch])[0]

    # --- sampling ----------------------------------------------------------------------------

    def _initial(self, z: np.ndarray | None, n: int) -> tuple:
        if z is None:
            return self.decoder.zero_state(n)
        return self.decoder.split_state(np.tanh(z @ self.to_state[0] + self.to_state[1]))

    def _inputs(self, s5: np.ndarray, z: np.ndarray | None,
                position: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's inputs for stroke-5 rows s5 (n, T, 5) that start at the absolute pen
        `position` (n, 2; None: the drawing's start), and the position after them, so that
        rows fed in pieces get the numbers of the model's decode over the whole sequence.
        Without position_input the position is not tracked and comes back as given."""
        parts = [s5]
        if z is not None:
            parts.append(np.broadcast_to(z[:, None, :], (s5.shape[0], s5.shape[1], z.shape[1])))
        if self.hps.position_input:
            positions = np.cumsum(s5[..., :2], axis=1)
            if position is not None:
                positions = positions + position[:, None, :]
            parts.append(positions * POSITION_SCALE)
            position = positions[:, -1]
        return (np.concatenate(parts, axis=-1) if len(parts) > 1 else s5), position

    def _sample(self, z: np.ndarray | None, n: int, temperature: float,
                rng: np.random.Generator, prefix: np.ndarray | None = None,
                pen_temperature: float = PEN_TEMPERATURE) -> list[np.ndarray]:
        """n stroke-3 continuations (model units) of `prefix` from latent z (n, z) or none."""
        for name, value in (("temperature", temperature), ("pen_temperature", pen_temperature)):
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
                    or not 0 < value < math.inf):
                raise SketchError(f"{name} must be a positive finite number, not {value!r}")
        if z is not None and not np.all(np.isfinite(z)):
            raise SketchError("the latent vector holds NaN or infinite values")
        m = self.hps.num_mixture
        prefix = np.zeros((0, 3), np.float32) if prefix is None else prefix
        primer = np.concatenate([START_TOKEN[None], stroke3_to_stroke5(prefix, len(prefix))])
        inputs, position = self._inputs(np.repeat(primer[None], n, axis=0), z)
        state, h = self.decoder.run(inputs, self._initial(z, n))
        h = h[:, -1]
        points = np.zeros((n, self.hps.max_seq_len - len(prefix), 3), np.float32)
        lengths = np.full(n, points.shape[1])
        ended = np.zeros(n, bool)
        rows = np.arange(n)
        spread = np.sqrt(temperature)  # sigmas scale by sqrt(tau), as in the paper
        for t in range(points.shape[1]):
            raw = h @ self.head[0] + self.head[1]
            pen_p = _softmax(raw[:, :3] / pen_temperature)
            pi_p = _softmax(raw[:, 3:3 + m] / temperature)
            mu1, mu2, ls1, ls2, corr = (raw[:, 3 + k * m:3 + (k + 1) * m] for k in range(1, 6))
            u = rng.random((n, 2))
            j = np.minimum((pi_p.cumsum(axis=1) < u[:, :1]).sum(axis=1), m - 1)
            pen = np.minimum((pen_p.cumsum(axis=1) < u[:, 1:]).sum(axis=1), 2)
            s1 = np.exp(np.clip(ls1[rows, j], -LOG_SIGMA_LIMIT, LOG_SIGMA_LIMIT)) * spread
            s2 = np.exp(np.clip(ls2[rows, j], -LOG_SIGMA_LIMIT, LOG_SIGMA_LIMIT)) * spread
            rho = np.tanh(np.clip(corr[rows, j], -CORR_LIMIT, CORR_LIMIT))
            e1, e2 = rng.standard_normal((2, n))
            dx = mu1[rows, j] + s1 * e1
            dy = mu2[rows, j] + s2 * (rho * e1 + np.sqrt(1.0 - rho ** 2) * e2)
            newly_ended = (pen == 2) & ~ended
            lengths[newly_ended] = t
            ended |= newly_ended
            if ended.all():
                break
            points[:, t] = np.stack([dx, dy, (pen == 1).astype(np.float32)], axis=1)
            x = np.zeros((n, 1, 5), np.float32)
            x[:, 0, 0], x[:, 0, 1] = dx, dy
            x[rows, 0, 2 + pen] = 1.0
            inputs, position = self._inputs(x, z, position)
            state, hs = self.decoder.run(inputs, state)
            h = hs[:, -1]
        return [np.concatenate([prefix, points[i, :lengths[i]]]) for i in range(n)]

    def _finish(self, drawings: list[np.ndarray]) -> list[np.ndarray]:
        return [self._to_drawing(d) for d in drawings]

    def generate(self, n: int = 1, temperature: float = 0.5, seed: int | None = None,
                 pen_temperature: float = PEN_TEMPERATURE) -> list[np.ndarray]:
        """n new drawings: from z ~ N(0, I) for a VAE, from the zero state otherwise."""
        n, rng = _count(n), _rng(seed)
        z = rng.standard_normal((n, self.hps.z_size)).astype(np.float32) if self.conditional else None
        return self._finish(self._sample(z, n, temperature, rng, pen_temperature=pen_temperature))

    def complete(self, prefix, n: int = 1, temperature: float = 0.5, seed: int | None = None,
                 pen_temperature: float = PEN_TEMPERATURE,
                 latent: str = "prefix") -> list[np.ndarray]:
        """n completions of a partial drawing; each starts with the prefix's own rows.
        A VAE conditions on a latent z chosen by `latent`: "prefix", the encoded prefix's mu
        (shared by the n completions), or "prior", z ~ N(0, I) drawn for each completion.
        An unconditional model has no z and takes only "prefix"."""
        if latent not in ("prefix", "prior"):
            raise SketchError(f"latent must be prefix or prior, not {latent!r}")
        if latent == "prior":
            self._require_vae("completing from the prior")
        s3 = self._to_model(prefix)
        n, rng = _count(n), _rng(seed)
        z = None
        if latent == "prior":
            z = rng.standard_normal((n, self.hps.z_size)).astype(np.float32)
        elif self.conditional:
            z = np.repeat(self.encode(prefix)[None], n, axis=0)
        results = self._finish(self._sample(z, n, temperature, rng, prefix=s3,
                                            pen_temperature=pen_temperature))
        original = as_stroke3(prefix)
        for r in results:  # the user's rows exactly as given, not scaled back and forth
            r[:len(original)] = original
        return results

    def decode(self, z, temperature: float = 0.5, seed: int | None = None,
               pen_temperature: float = PEN_TEMPERATURE) -> np.ndarray:
        """One drawing decoded from a latent vector z (z_size,)."""
        try:
            z = np.asarray(z, np.float32).reshape(1, -1)
        except (TypeError, ValueError):
            raise SketchError("a latent vector must be numbers") from None
        return self.decode_many(z, temperature, seed, pen_temperature)[0]

    def decode_many(self, zs, temperature: float = 0.5, seed: int | None = None,
                    pen_temperature: float = PEN_TEMPERATURE) -> list[np.ndarray]:
        """One drawing for each latent vector of zs (n, z_size), sampled together."""
        self._require_vae("decoding a latent vector")
        try:
            zs = np.asarray(zs, np.float32)
        except (TypeError, ValueError):
            raise SketchError("a latent vector must be numbers") from None
        if zs.ndim != 2 or zs.shape[1] != self.hps.z_size:
            raise SketchError(f"latent vectors have shape (n, {self.hps.z_size}), not {zs.shape}")
        return self._finish(self._sample(zs, len(zs), temperature, _rng(seed),
                                         pen_temperature=pen_temperature))

    def reconstruct(self, sketch, n: int = 1, temperature: float = 0.5, seed: int | None = None,
                    pen_temperature: float = PEN_TEMPERATURE) -> list[np.ndarray]:
        """n imitations of a drawing, decoded from its latent mean."""
        self._require_vae("reconstruction")
        n, rng = _count(n), _rng(seed)
        z = np.repeat(self.encode(sketch)[None], n, axis=0)
        return self._finish(self._sample(z, n, temperature, rng, pen_temperature=pen_temperature))

    def interpolate(self, a, b, steps: int = 10, method: str = "slerp", temperature: float = 0.1,
                    seed: int | None = None,
                    pen_temperature: float = PEN_TEMPERATURE) -> list[np.ndarray]:
        """Drawings decoded along the latent path from a to b (same random draws at each step)."""
        self._require_vae("interpolation")
        steps = _count(steps, "steps")
        za, zb = self.encode_many([a, b])
        path = latent_path(za, zb, steps, method)
        if seed is None:
            seed = int(np.random.default_rng().integers(2 ** 31))
        return [self.decode(z, temperature, seed, pen_temperature) for z in path]


def _keras_file_hparams(keras_file: Path) -> HParams:
    """The hparams inside a .keras file's config, read without building anything."""
    try:
        with zipfile.ZipFile(keras_file) as archive:
            if archive.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                raise ValueError("its config.json is far too large")
            config = json.loads(archive.read("config.json"))
        return HParams.from_dict(config["config"]["hparams"])
    except KeyError:
        raise ModelFileError(f"{keras_file} is not a sketch_model .keras file "
                             "(its config holds no sketch_model hparams)") from None
    except (OSError, zipfile.BadZipFile, TypeError, ValueError, ModelFileError) as err:
        raise ModelFileError(f"{keras_file} is not a sketch_model .keras file ({err})") from None


def load_model(path: str | Path) -> Sketcher:
    """Load a model directory (a bundled model or a training run) for drawing."""
    import keras

    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model directory")
    keras_file = path / "model.keras"
    if not keras_file.exists():
        raise ModelFileError(f"{path} has no model.keras: not a model directory, or a run that "
                             "has not reached its first checkpoint yet")
    try:
        dataset = json.loads((path / "dataset.json").read_text())
        factor = float(dataset["scale_factor"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"{path}/dataset.json is missing or unreadable ({err})") from None
    if not (math.isfinite(factor) and factor > 1e-6):
        raise ModelFileError(f"{path}/dataset.json has scale_factor {factor}, not a positive number")
    hps = HParams.load(path / "hparams.json")  # refuses other or future versions clearly
    # checked before Keras builds anything; num_steps alone may grow when a run is resumed
    if _keras_file_hparams(keras_file).replace(num_steps=hps.num_steps) != hps:
        raise ModelFileError(f"{keras_file} describes another model than {path}/hparams.json")
    try:
        model = keras.saving.load_model(keras_file, compile=False, safe_mode=True,
                                        custom_objects={"SketchRNN": SketchRNN})
    except Exception as err:  # Keras raises many types for a bad or hostile file
        raise ModelFileError(f"{keras_file} could not be loaded safely: {err}") from None
    if not isinstance(model, SketchRNN):
        raise ModelFileError(f"{keras_file} holds a {type(model).__name__}, not a sketch_model model")
    info = {"dataset": dataset}
    for name in ("best.json", "eval.json"):
        if (path / name).exists():
            try:
                info[name[:-5]] = json.loads((path / name).read_text())
            except (OSError, ValueError):
                pass
    return Sketcher(model, factor, path, info)
