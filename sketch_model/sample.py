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

import dataclasses
import json
import math
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import CORR_LIMIT, LN_EPSILON, LOG_SIGMA_LIMIT, PEN_TEMPERATURE, POSITION_SCALE, HParams
from .datasets import START_TOKEN
from .errors import ModelFileError, SketchError
from .files import (BEST_SCHEMA, DATASET_SCHEMA, EVAL_SCHEMA, MAX_KERAS_BYTES, check_regular,
                    read_json)
from .strokes import as_stroke3, longest_side, stroke3_to_stroke5

if TYPE_CHECKING:  # Keras is imported only where a Keras model is made or read
    from .model import SketchRNN

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

    def __init__(self, kind: str, weights: dict[str, np.ndarray]) -> None:
        """kind: LSTMCell or HyperLSTMCell; weights by the cell's variable names (W_xh, ...).
        A layer-norm LSTM is an LSTMCell whose weights hold ln_gamma instead of bias."""
        self.kind = kind
        self.w = weights
        self.layer_norm = kind == "HyperLSTMCell" or "ln_gamma" in weights
        self.units = weights["W_hh"].shape[0]
        hyper_units = weights["hyper_W_hh"].shape[0] if kind == "HyperLSTMCell" else 0
        self.state_size = 2 * self.units + 2 * hyper_units

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


@dataclasses.dataclass
class ModelWeights:
    """A model as plain arrays: its hparams and each weight under its Keras variable path
    (decoder/W_xh, mixture_head/kernel, ...). What a model file of another format becomes."""

    hps: HParams
    arrays: dict[str, np.ndarray]

    @classmethod
    def from_keras(cls, model: SketchRNN) -> "ModelWeights":
        from keras import ops

        return cls(model.hps, {v.path: ops.convert_to_numpy(v) for v in model.weights
                               if v is not model.kl_weight})

    def to_keras(self) -> SketchRNN:
        """A SketchRNN holding these weights (for evaluation; sampling needs none)."""
        from .model import SketchRNN

        model = SketchRNN(self.hps)
        for variable in model.weights:
            if variable is not model.kl_weight:
                variable.assign(self.arrays[variable.path])
        return model

    def cell(self, name: str) -> NumpyCell:
        prefix = name + "/"
        weights = {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}
        hyper = self.hps.dec_model == "hyper" and name == "decoder"
        return NumpyCell("HyperLSTMCell" if hyper else "LSTMCell", weights)

    def linear(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.arrays[f"{name}/kernel"], self.arrays[f"{name}/bias"]


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


def _check_temperatures(temperature: float, pen_temperature: float) -> None:
    for name, value in (("temperature", temperature), ("pen_temperature", pen_temperature)):
        if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
                or not 0 < value < math.inf):
            raise SketchError(f"{name} must be a positive finite number, not {value!r}")


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
    """A trained model ready to draw: its weights (a SketchRNN, or plain arrays read from a
    file of another format), its data scale factor and the size of drawing it expects."""

    def __init__(self, model: SketchRNN | ModelWeights, scale_factor: float,
                 path: Path | None = None, info: dict | None = None, *,
                 drawing_size: float | None = None, squash_latent: bool = False) -> None:
        """drawing_size: the longest side of a typical whole training drawing, in drawing
        units (None: unknown). squash_latent: z passes through tanh before the decoder, as in
        sketch-rnn-js VAE files older than version 6."""
        self._model = None if isinstance(model, ModelWeights) else model
        self.weights = model if self._model is None else ModelWeights.from_keras(model)
        self.hps: HParams = self.weights.hps
        self.scale_factor = float(scale_factor)
        self.path = path
        self.info = info or {}
        self.drawing_size = drawing_size
        self.squash_latent = squash_latent
        self.decoder = self.weights.cell("decoder")
        self.head = self.weights.linear("mixture_head")
        if self.hps.conditional:
            self.enc_fw, self.enc_bw = self.weights.cell("enc_fw"), self.weights.cell("enc_bw")
            self.to_mu, self.to_state = self.weights.linear("mu"), self.weights.linear("initial_state")

    @property
    def model(self) -> SketchRNN:
        """The Keras model (built from the arrays on first use when read from another format)."""
        if self._model is None:
            self._model = self.weights.to_keras()
        return self._model

    @property
    def conditional(self) -> bool:
        return self.hps.conditional

    def input_scale(self, frame: float) -> float:
        """The factor that brings a drawing made in a frame `frame` units wide (a canvas's
        width, 255 for simplified Quick, Draw! data) to the size of this model's training
        drawings; 1 when the model does not say what size it expects."""
        if not (isinstance(frame, (int, float, np.floating)) and 0 < frame < math.inf):
            raise SketchError(f"a frame size must be a positive finite number, not {frame!r}")
        return 1.0 if self.drawing_size is None else self.drawing_size / float(frame)

    def data_scale(self, drawings: list) -> float:
        """The factor that brings these whole drawings (a data set) to the size of this model's
        training drawings: input_scale of their median longest side."""
        sides = [longest_side(d) for d in drawings]
        if not sides or not np.isfinite(sides).all() or np.median(sides) <= 0:
            raise SketchError("the drawings have no extent to measure")
        return self.input_scale(float(np.median(sides)))

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

    def encode_many(self, sketches: list, chunk: int = 128, whole: bool = True) -> np.ndarray:
        """Latent means mu (n, z_size) of the drawings, in their order. They are encoded
        `chunk` at a time, sorted by length so that each batch needs little padding.
        whole=False encodes started drawings, for a model trained to tell them from finished
        ones (encode_prefix_prob > 0); other models read both alike."""
        self._require_vae("encoding")
        chunk = _count(chunk, "chunk")
        model_units = [self._to_model(s) for s in sketches]
        order = np.argsort([len(s) for s in model_units], kind="stable")
        mu = np.zeros((len(model_units), self.hps.z_size), np.float32)
        mark_ends = whole and self.hps.encode_prefix_prob > 0
        for start in range(0, len(order), chunk):
            rows = order[start:start + chunk]
            mu[rows] = self._encode_batch([model_units[i] for i in rows], mark_ends)
        return mu

    def _encode_batch(self, batch: list[np.ndarray], mark_ends: bool) -> np.ndarray:
        """mu of stroke-3 drawings (model units) padded to the longest: the backward LSTM reads
        each drawing reversed within its own length, so in both directions the padding comes
        after the drawing's steps and its final h is read at its own last step. mark_ends:
        each drawing's last point has the end-of-sketch pen (model.mark_ends)."""
        lengths = np.array([len(s) for s in batch])
        x = np.stack([stroke3_to_stroke5(s, lengths.max()) for s in batch])
        if mark_ends:
            x[np.arange(len(batch)), lengths - 1, 2:] = (0, 0, 1)
        steps = np.arange(x.shape[1])
        backward = np.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        zero = self.enc_fw.zero_state(len(batch))
        _, fw = self.enc_fw.run(x, zero)
        _, bw = self.enc_bw.run(np.take_along_axis(x, backward[..., None], axis=1), zero)
        rows, last = np.arange(len(batch)), lengths - 1
        last_h = np.concatenate([fw[rows, last], bw[rows, last]], axis=-1)
        return last_h @ self.to_mu[0] + self.to_mu[1]

    def encode(self, sketch, whole: bool = True) -> np.ndarray:
        """The latent mean mu (z_size,) of one drawing (whole=False: a started one, see
        encode_many)."""
        return self.encode_many([sketch], whole=whole)[0]

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
        _check_temperatures(temperature, pen_temperature)
        z = self._latent(z)
        prefix = np.zeros((0, 3), np.float32) if prefix is None else prefix
        primer = np.concatenate([START_TOKEN[None], stroke3_to_stroke5(prefix, len(prefix))])
        inputs, position = self._inputs(np.repeat(primer[None], n, axis=0), z)
        state, h = self.decoder.run(inputs, self._initial(z, n))
        h = h[:, -1]
        points = np.zeros((n, self.hps.max_seq_len - len(prefix), 3), np.float32)
        lengths = np.full(n, points.shape[1])
        ended = np.zeros(n, bool)
        rows = np.arange(n)
        m = self.hps.num_mixture
        for t in range(points.shape[1]):
            mix = self._mixture(h, temperature, pen_temperature)
            u = rng.random((n, 2))
            j = np.minimum((mix["pi"].cumsum(axis=1) < u[:, :1]).sum(axis=1), m - 1)
            pen = np.minimum((mix["pen"].cumsum(axis=1) < u[:, 1:]).sum(axis=1), 2)
            s1, s2, rho = mix["sigma_x"][rows, j], mix["sigma_y"][rows, j], mix["corr"][rows, j]
            e1, e2 = rng.standard_normal((2, n))
            dx = mix["mu_x"][rows, j] + s1 * e1
            dy = mix["mu_y"][rows, j] + s2 * (rho * e1 + np.sqrt(1.0 - rho ** 2) * e2)
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

    def _latent(self, z: np.ndarray | None) -> np.ndarray | None:
        """z as the decoder reads it; refuses NaN and infinity."""
        if z is None:
            return None
        if not np.all(np.isfinite(z)):
            raise SketchError("the latent vector holds NaN or infinite values")
        return np.tanh(z) if self.squash_latent else z

    def _mixture(self, h: np.ndarray, temperature: float,
                 pen_temperature: float) -> dict[str, np.ndarray]:
        """The next point's distribution from decoder outputs h (n, units), in model units:
        pi (n, M) and pen (n, 3) at their temperatures, mu_x, mu_y, sigma_x, sigma_y and corr
        (n, M), the sigmas scaled by sqrt(temperature) as in the paper."""
        m = self.hps.num_mixture
        raw = h @ self.head[0] + self.head[1]
        mu1, mu2, ls1, ls2, corr = (raw[:, 3 + k * m:3 + (k + 1) * m] for k in range(1, 6))
        spread = np.sqrt(temperature)
        return {"pi": _softmax(raw[:, 3:3 + m] / temperature), "mu_x": mu1, "mu_y": mu2,
                "sigma_x": np.exp(np.clip(ls1, -LOG_SIGMA_LIMIT, LOG_SIGMA_LIMIT)) * spread,
                "sigma_y": np.exp(np.clip(ls2, -LOG_SIGMA_LIMIT, LOG_SIGMA_LIMIT)) * spread,
                "corr": np.tanh(np.clip(corr, -CORR_LIMIT, CORR_LIMIT)),
                "pen": _softmax(raw[:, :3] / pen_temperature)}

    def distributions(self, drawing, temperature: float = 1.0,
                      pen_temperature: float | None = None, z=None) -> dict[str, np.ndarray]:
        """What the model expects at each point of `drawing` as it reads it (teacher forcing):
        row k is the distribution of point k+1 after the start token and points 1..k, so there
        are len(drawing) + 1 rows. Keys as sampling uses them: pi (mixture weights), mu_x,
        mu_y, sigma_x, sigma_y (drawing units; sigmas scaled by sqrt(temperature)), corr, and
        pen (probabilities of pen down, lifted, end, at pen_temperature, by default equal to
        temperature). A VAE reads z (z_size,), by default the drawing's own latent mean."""
        pen_temperature = temperature if pen_temperature is None else pen_temperature
        _check_temperatures(temperature, pen_temperature)
        s3 = self._to_model(drawing)
        if self.conditional:
            z = self.encode(drawing) if z is None else np.asarray(z, np.float32).reshape(-1)
            if z.shape != (self.hps.z_size,):
                raise SketchError(f"a latent vector has {self.hps.z_size} numbers, not {z.size}")
            z = self._latent(z[None])
        rows = np.concatenate([START_TOKEN[None], stroke3_to_stroke5(s3, len(s3))])
        _, h = self.decoder.run(self._inputs(rows[None], z)[0], self._initial(z, 1))
        mix = self._mixture(h[0], temperature, pen_temperature)
        for key in ("mu_x", "mu_y", "sigma_x", "sigma_y"):
            mix[key] = mix[key] * self.scale_factor
        return mix

    def _finish(self, drawings: list[np.ndarray]) -> list[np.ndarray]:
        return [self._to_drawing(d) for d in drawings]

    def generate(self, n: int = 1, temperature: float = 0.5, seed: int | None = None,
                 pen_temperature: float = PEN_TEMPERATURE) -> list[np.ndarray]:
        """n new drawings: from z ~ N(0, I) for a VAE, from the zero state otherwise."""
        n, rng = _count(n), _rng(seed)
        z = rng.standard_normal((n, self.hps.z_size)).astype(np.float32) if self.conditional else None
        return self._finish(self._sample(z, n, temperature, rng, pen_temperature=pen_temperature))

    @property
    def default_latent(self) -> str:
        """How `complete` chooses a VAE's z by default: from the prefix for a model trained to
        encode partial drawings (encode_prefix_prob > 0), else from the prior, since a VAE that
        only saw whole drawings takes a prefix for a whole drawing and stops early (on the sheep
        test split, sheep_vae's weights of step 33,000 finished 0.80 of completions from the
        prior and 0.36 from the prefix: docs/completion.md)."""
        if self.conditional and self.hps.encode_prefix_prob <= 0:
            return "prior"
        return "prefix"

    def complete(self, prefix, n: int = 1, temperature: float = 0.5, seed: int | None = None,
                 pen_temperature: float = PEN_TEMPERATURE,
                 latent: str | None = None) -> list[np.ndarray]:
        """n completions of a partial drawing; each starts with the prefix's own rows.
        A VAE conditions on a latent z chosen by `latent`: "prefix", the encoded prefix's mu
        (shared by the n completions), or "prior", z ~ N(0, I) drawn for each completion;
        None takes `default_latent`. An unconditional model has no z and takes only "prefix"."""
        latent = self.default_latent if latent is None else latent
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
            z = np.repeat(self.encode(prefix, whole=False)[None], n, axis=0)
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
    """Load a model for drawing: a model directory (a bundled model or a training run), or a
    sketch-rnn-js file (<class>.gen.json or <class>.vae.json, Google's published format)."""
    path = Path(path)
    if path.suffix == ".json" and not path.is_dir():
        from .sketchrnn_js import load_sketchrnn_js

        return load_sketchrnn_js(path)
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model directory or a sketch-rnn-js .json file")
    js_files = sorted(path.glob("*.gen.json")) + sorted(path.glob("*.vae.json"))
    if len(js_files) == 1 and not (path / "model.keras").exists():
        from .sketchrnn_js import load_sketchrnn_js

        return load_sketchrnn_js(js_files[0])
    keras_file = path / "model.keras"
    if not os.path.lexists(keras_file):
        raise ModelFileError(f"{path} has no model.keras: not a model directory, or a run that "
                             "has not reached its first checkpoint yet")
    check_regular(keras_file, MAX_KERAS_BYTES)  # a FIFO would hang the zip reader
    dataset = read_json(path / "dataset.json", DATASET_SCHEMA)
    factor = float(dataset["scale_factor"])
    hps = HParams.load(path / "hparams.json")  # refuses other or future versions clearly
    # checked before Keras builds anything; num_steps alone may grow when a run is resumed
    if _keras_file_hparams(keras_file).replace(num_steps=hps.num_steps) != hps:
        raise ModelFileError(f"{keras_file} describes another model than {path}/hparams.json")
    import keras

    from .model import SketchRNN

    try:
        model = keras.saving.load_model(keras_file, compile=False, safe_mode=True,
                                        custom_objects={"SketchRNN": SketchRNN})
    except Exception as err:  # Keras raises many types for a bad or hostile file
        raise ModelFileError(f"{keras_file} could not be loaded safely: {err}") from None
    if not isinstance(model, SketchRNN):
        raise ModelFileError(f"{keras_file} holds a {type(model).__name__}, not a sketch_model model")
    info = {"dataset": dataset}
    for name, schema in (("best.json", BEST_SCHEMA), ("eval.json", EVAL_SCHEMA)):
        if os.path.lexists(path / name):  # optional, but refused when present and bad
            info[name[:-5]] = read_json(path / name, schema)
    return Sketcher(model, factor, path, info, drawing_size=_drawing_size(dataset))


def _drawing_size(dataset: dict) -> float | None:
    """dataset.json's drawing_size (median longest side of the training drawings), if valid."""
    size = dataset.get("drawing_size")
    if isinstance(size, (int, float)) and not isinstance(size, bool) and 0 < size < math.inf:
        return float(size)
    return None
