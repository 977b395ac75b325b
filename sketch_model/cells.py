"""Recurrent cells of the reference sketch-rnn: LSTM, layer-norm LSTM and HyperLSTM.

Each cell keeps the reference's maths (forget bias 1.0, recurrent dropout on the candidate
update g without memory loss, Semeniuta et al. 2016). The input projection x @ W_xh does not
depend on the state, so it is computed for all time steps in one matrix product before the
recurrence; the scan then does only the state-dependent work.

The main products x @ W_xh and h @ W_hh can run in bfloat16 (`matmul_dtype`): weights, states,
gates and everything after them stay float32, only the operands of those products are rounded.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

LN_EPSILON = 1e-3  # the reference's layer-norm epsilon


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def orthogonal_blocks(rng: np.random.Generator, units: int, blocks: int) -> np.ndarray:
    """(units, blocks*units): each gate's block orthogonal, as the reference's lstm_ortho_initializer."""
    mats = []
    for _ in range(blocks):
        q, r = np.linalg.qr(rng.normal(size=(units, units)))
        mats.append(q * np.sign(np.diag(r)))
    return np.concatenate(mats, axis=1).astype(np.float32)


def _matmul(x, w, dtype: str):
    """x @ w with both operands in `dtype`, returned as float32."""
    if dtype == "float32":
        return ops.matmul(x, w)
    return ops.cast(ops.matmul(ops.cast(x, dtype), ops.cast(w, dtype)), "float32")


def _layer_norm(x, gamma, beta, groups: int):
    """Normalise each of `groups` equal slices of the last axis separately (reference layer_norm_all)."""
    shape = ops.shape(x)
    xs = ops.reshape(x, (shape[0], groups, -1))
    mean = ops.mean(xs, axis=-1, keepdims=True)
    var = ops.mean(ops.square(xs - mean), axis=-1, keepdims=True)
    xs = (xs - mean) * ops.rsqrt(var + LN_EPSILON)
    return ops.reshape(xs, shape) * gamma + beta


def _update_cell(z, c, keep):
    """The reference's cell update from gate pre-activations z = [i, j, f, o]: forget bias 1,
    recurrent dropout on the candidate g only. Returns (new c, output gate pre-activation)."""
    i, j, f, o = ops.split(z, 4, axis=-1)
    g = ops.tanh(j)
    if keep is not None:
        g = g * keep
    return c * ops.sigmoid(f + 1.0) + ops.sigmoid(i) * g, o


class _Cell(keras.layers.Layer):
    """Shared weight creation; weights are made at construction from a seeded numpy generator."""

    def _weight(self, name: str, value: np.ndarray):
        w = self.add_weight(name=name, shape=value.shape, initializer="zeros")
        w.assign(value)
        return w


class _RecurrentCell(_Cell):
    """A cell with a recurrent kernel w_hh whose products run in `matmul_dtype`."""

    def recurrent_kernel(self):
        """W_hh in the matmul dtype, cast once per sequence rather than at every step."""
        return self.w_hh if self.matmul_dtype == "float32" else ops.cast(self.w_hh, self.matmul_dtype)


class LSTMCell(_RecurrentCell):
    """The reference LSTMCell, or LayerNormLSTMCell when layer_norm=True."""

    def __init__(self, units: int, input_size: int, rng: np.random.Generator,
                 layer_norm: bool = False, matmul_dtype: str = "float32", **kwargs):
        super().__init__(**kwargs)
        self.units, self.layer_norm, self.matmul_dtype = units, layer_norm, matmul_dtype
        self.w_xh = self._weight("W_xh", glorot_uniform(rng, (input_size, 4 * units)))
        self.w_hh = self._weight("W_hh", orthogonal_blocks(rng, units, 4))
        if layer_norm:  # layer norm's beta replaces the bias
            self.ln_gamma = self._weight("ln_gamma", np.ones(4 * units, np.float32))
            self.ln_beta = self._weight("ln_beta", np.zeros(4 * units, np.float32))
            self.ln_c_gamma = self._weight("ln_c_gamma", np.ones(units, np.float32))
            self.ln_c_beta = self._weight("ln_c_beta", np.zeros(units, np.float32))
        else:
            self.bias = self._weight("bias", np.zeros(4 * units, np.float32))
        self.built = True

    @property
    def state_size(self) -> int:
        return 2 * self.units

    def split_state(self, flat):
        return tuple(ops.split(flat, 2, axis=-1))

    def project_inputs(self, x):
        """x @ W_xh for every step at once; x is (..., input_size)."""
        xw = _matmul(x, self.w_xh, self.matmul_dtype)
        return (xw,) if self.layer_norm else (xw + self.bias,)

    def step(self, state, projected, w_hh, keep=None):
        """One step from `state`; w_hh is recurrent_kernel(), passed in so it is cast once."""
        h, c = state
        z = projected[0] + _matmul(h, w_hh, self.matmul_dtype)
        if self.layer_norm:
            z = _layer_norm(z, self.ln_gamma, self.ln_beta, 4)
        c, o = _update_cell(z, c, keep)
        c_out = _layer_norm(c, self.ln_c_gamma, self.ln_c_beta, 1) if self.layer_norm else c
        h = ops.tanh(c_out) * ops.sigmoid(o)
        return (h, c)


class HyperLSTMCell(_RecurrentCell):
    """HyperLSTM (Ha et al. 2016) as the reference builds it: a small LSTM reads [x, h] and emits
    per-step scalings of the main LSTM's input and recurrent gate pre-activations (and biases
    for the recurrent ones); layer norm on the gates and the cell as in the reference."""

    def __init__(self, units: int, input_size: int, rng: np.random.Generator,
                 hyper_units: int = 256, embedding_size: int = 32, matmul_dtype: str = "float32",
                 **kwargs):
        super().__init__(**kwargs)
        self.units, self.hyper_units, self.embedding_size = units, hyper_units, embedding_size
        self.matmul_dtype = matmul_dtype
        e = embedding_size
        self.w_xh = self._weight("W_xh", glorot_uniform(rng, (input_size, 4 * units)))
        self.w_hh = self._weight("W_hh", orthogonal_blocks(rng, units, 4))
        self.bias = self._weight("bias", np.zeros(4 * units, np.float32))
        # Hyper LSTM on [x, h]: its x part is projected ahead like the main cell's.
        hyper_in = glorot_uniform(rng, (input_size + units, 4 * hyper_units))
        self.hyper_w_xh = self._weight("hyper_W_xh", hyper_in[:input_size])
        self.hyper_w_hh_main = self._weight("hyper_W_hmain", hyper_in[input_size:])
        self.hyper_w_hh = self._weight("hyper_W_hh", orthogonal_blocks(rng, hyper_units, 4))
        self.hyper_bias = self._weight("hyper_bias", np.zeros(4 * hyper_units, np.float32))
        # 8 scalings (4 gates x {input, recurrent}): z = hyper_h @ zw + 1, alpha = z @ w_alpha.
        self.zw = self._weight("zw", np.zeros((hyper_units, 8 * e), np.float32))
        self.zw_bias = self._weight("zw_bias", np.ones(8 * e, np.float32))
        self.alpha = self._weight("alpha", np.full((8, e, units), 0.1 / e, np.float32))
        # 4 biases for the recurrent parts: zb = hyper_h @ w_zb (gaussian 0.01), beta = zb @ w_beta (0).
        self.zb = self._weight("zb", (rng.normal(size=(hyper_units, 4 * e)) * 0.01).astype(np.float32))
        self.beta = self._weight("beta", np.zeros((4, e, units), np.float32))
        self.ln_gamma = self._weight("ln_gamma", np.ones(4 * units, np.float32))
        self.ln_beta = self._weight("ln_beta", np.zeros(4 * units, np.float32))
        self.ln_c_gamma = self._weight("ln_c_gamma", np.ones(units, np.float32))
        self.ln_c_beta = self._weight("ln_c_beta", np.zeros(units, np.float32))
        self.built = True

    @property
    def state_size(self) -> int:
        return 2 * (self.units + self.hyper_units)

    def split_state(self, flat):
        u, k = self.units, self.hyper_units
        return (flat[:, :u], flat[:, u:2 * u], flat[:, 2 * u:2 * u + k], flat[:, 2 * u + k:])

    def project_inputs(self, x):
        return (_matmul(x, self.w_xh, self.matmul_dtype),
                ops.matmul(x, self.hyper_w_xh) + self.hyper_bias)

    def step(self, state, projected, w_hh, keep=None):
        """One step; the small hyper network's products stay float32."""
        h, c, hh, hc = state
        xw, hyper_xw = projected
        # the hyper cell: a plain LSTM without dropout (hyper_use_recurrent_dropout=False)
        zh = hyper_xw + ops.matmul(h, self.hyper_w_hh_main) + ops.matmul(hh, self.hyper_w_hh)
        hi, hj, hf, ho = ops.split(zh, 4, axis=-1)
        hc = hc * ops.sigmoid(hf + 1.0) + ops.sigmoid(hi) * ops.tanh(hj)
        hh = ops.tanh(hc) * ops.sigmoid(ho)

        batch = ops.shape(h)[0]
        e = self.embedding_size
        zw = ops.reshape(ops.matmul(hh, self.zw) + self.zw_bias, (batch, 8, e))
        scale = ops.einsum("bge,geu->bgu", zw, self.alpha)  # (batch, 8, units)
        zb = ops.reshape(ops.matmul(hh, self.zb), (batch, 4, e))
        shift = ops.einsum("bge,geu->bgu", zb, self.beta)  # (batch, 4, units)

        x_part = ops.reshape(xw, (batch, 4, self.units)) * scale[:, :4]
        h_part = (ops.reshape(_matmul(h, w_hh, self.matmul_dtype), (batch, 4, self.units))
                  * scale[:, 4:] + shift)
        z = ops.reshape(x_part + h_part, (batch, 4 * self.units)) + self.bias
        z = _layer_norm(z, self.ln_gamma, self.ln_beta, 4)
        c, o = _update_cell(z, c, keep)
        h = ops.tanh(_layer_norm(c, self.ln_c_gamma, self.ln_c_beta, 1)) * ops.sigmoid(o)
        return (h, c, hh, hc)


def make_cell(kind: str, units: int, input_size: int, rng: np.random.Generator,
              hyper_units: int = 256, embedding_size: int = 32, name: str | None = None,
              matmul_dtype: str = "float32"):
    """The cell named by the reference's enc_model/dec_model setting."""
    if kind == "lstm":
        return LSTMCell(units, input_size, rng, layer_norm=False, matmul_dtype=matmul_dtype, name=name)
    if kind == "layer_norm":
        return LSTMCell(units, input_size, rng, layer_norm=True, matmul_dtype=matmul_dtype, name=name)
    if kind == "hyper":
        return HyperLSTMCell(units, input_size, rng, hyper_units, embedding_size,
                             matmul_dtype=matmul_dtype, name=name)
    raise ValueError(f"unknown cell {kind!r}: use lstm, layer_norm or hyper")


def run_cell(cell, x, initial_state, keep=None):
    """Run `cell` over batch-major inputs x (B, T, D) from `initial_state` (a tuple).

    keep: optional (B, T, units) recurrent-dropout multipliers (0 or 1/keep_prob).
    Returns (final_state, states) where states is the tuple of per-step states, each (B, T, ...).
    """
    parts = list(cell.project_inputs(x)) + ([] if keep is None else [keep])
    sizes = [p.shape[-1] for p in parts]
    # one stacked input: keras' TensorFlow scan cannot take several inputs of unknown length
    xs = ops.transpose(ops.concatenate(parts, axis=-1), (1, 0, 2))
    cuts = list(np.cumsum(sizes)[:-1])
    w_hh = cell.recurrent_kernel()

    def body(state, step_input):
        pieces = ops.split(step_input, cuts, axis=-1) if cuts else [step_input]
        if keep is None:
            new = cell.step(state, tuple(pieces), w_hh)
        else:
            new = cell.step(state, tuple(pieces[:-1]), w_hh, pieces[-1])
        return new, new  # keras' TensorFlow scan wants outputs shaped like the carry

    final, states = ops.scan(body, tuple(initial_state), xs)
    return final, tuple(ops.transpose(s, (1, 0, 2)) for s in states)


class Linear(_Cell):
    """y = x @ W + b with the reference's super_linear initialisers ('gaussian' std or glorot)."""

    def __init__(self, input_size: int, output_size: int, rng: np.random.Generator,
                 std: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if std is None:
            kernel = glorot_uniform(rng, (input_size, output_size))
        else:
            kernel = (rng.normal(size=(input_size, output_size)) * std).astype(np.float32)
        self.kernel = self._weight("kernel", kernel)
        self.bias = self._weight("bias", np.zeros(output_size, np.float32))
        self.built = True

    def call(self, x):
        return ops.matmul(x, self.kernel) + self.bias
