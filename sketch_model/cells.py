"""Recurrent cells of the reference sketch-rnn: LSTM, layer-norm LSTM and HyperLSTM.

Each cell keeps the reference's maths (forget bias 1.0, recurrent dropout on the candidate
update g without memory loss, Semeniuta et al. 2016). The input projection x @ W_xh does not
depend on the state, so it is computed for all time steps in one matrix product before the
recurrence; the scan then does only the state-dependent work.

Each step is the recurrent product r = h @ W (the only large product inside the loop) followed
by the cell's element-wise part. `run_cell` differentiates the loop in one of two ways:
"autodiff" lets the framework differentiate every step, weights included; "batched" (the same
gradients) carries only the state's gradient back through the loop and then takes every
weight's gradient for all steps at once: W's as one large product H^T @ dR, the element-wise
part's in one vectorised pass. On a CPU, batched trains the lstm and layer_norm cells 1.15 to
1.3 times as fast (benchmarks/train_throughput.py); the HyperLSTM, whose element-wise part
holds products of its own, is faster with autodiff.

The main products x @ W_xh and h @ W can run in bfloat16 (`matmul_dtype`): weights, states,
gates and everything after them stay float32, only the operands of those products are rounded.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops, tree

from .config import LN_EPSILON, RECURRENCE_GRADIENTS


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
    xs = ops.reshape(x, (-1, groups, x.shape[-1] // groups))
    mean = ops.mean(xs, axis=-1, keepdims=True)
    var = ops.mean(ops.square(xs - mean), axis=-1, keepdims=True)
    xs = (xs - mean) * ops.rsqrt(var + LN_EPSILON)
    return ops.reshape(xs, ops.shape(x)) * gamma + beta


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
    """A cell whose step is r = h @ recurrent_kernel() (in `matmul_dtype`), then pointwise()."""

    def recurrent_kernel(self):
        """The kernel applied to h, in the matmul dtype (cast once per sequence)."""
        kernel = self._recurrent_weights()
        return kernel if self.matmul_dtype == "float32" else ops.cast(kernel, self.matmul_dtype)

    def _recurrent_weights(self):
        """What multiplies h at each step, in float32."""
        return self.w_hh

    def pointwise_weights(self) -> dict:
        """The weights that pointwise() reads, by name."""
        return {}


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

    def pointwise_weights(self) -> dict:
        if not self.layer_norm:
            return {}
        return {"ln_gamma": self.ln_gamma, "ln_beta": self.ln_beta,
                "ln_c_gamma": self.ln_c_gamma, "ln_c_beta": self.ln_c_beta}

    def project_inputs(self, x):
        """x @ W_xh for every step at once; x is (..., input_size)."""
        xw = _matmul(x, self.w_xh, self.matmul_dtype)
        return (xw,) if self.layer_norm else (xw + self.bias,)

    def pointwise(self, state, recurrent, projected, keep, w):
        """The step after r = h @ W_hh: gates, cell and output; w is pointwise_weights()."""
        _, c = state
        z = projected[0] + recurrent
        if self.layer_norm:
            z = _layer_norm(z, w["ln_gamma"], w["ln_beta"], 4)
        c, o = _update_cell(z, c, keep)
        c_out = _layer_norm(c, w["ln_c_gamma"], w["ln_c_beta"], 1) if self.layer_norm else c
        return (ops.tanh(c_out) * ops.sigmoid(o), c)


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
        return (flat[..., :u], flat[..., u:2 * u], flat[..., 2 * u:2 * u + k], flat[..., 2 * u + k:])

    def _recurrent_weights(self):
        """[W_hh | hyper_W_hmain]: both products of h in one."""
        return ops.concatenate([self.w_hh, self.hyper_w_hh_main], axis=1)

    def pointwise_weights(self) -> dict:
        names = ("hyper_w_hh", "zw", "zw_bias", "alpha", "zb", "beta", "bias",
                 "ln_gamma", "ln_beta", "ln_c_gamma", "ln_c_beta")
        return {name: getattr(self, name) for name in names}

    def project_inputs(self, x):
        return (_matmul(x, self.w_xh, self.matmul_dtype),
                ops.matmul(x, self.hyper_w_xh) + self.hyper_bias)

    def pointwise(self, state, recurrent, projected, keep, w):
        """The step after r = h @ [W_hh | hyper_W_hmain]; the hyper network's own product
        hh @ hyper_W_hh stays float32. w is pointwise_weights()."""
        _, c, hh, hc = state
        xw, hyper_xw = projected
        main, to_hyper = recurrent[..., :4 * self.units], recurrent[..., 4 * self.units:]
        # the hyper cell: a plain LSTM without dropout (hyper_use_recurrent_dropout=False)
        zh = hyper_xw + to_hyper + ops.matmul(hh, w["hyper_w_hh"])
        hi, hj, hf, ho = ops.split(zh, 4, axis=-1)
        hc = hc * ops.sigmoid(hf + 1.0) + ops.sigmoid(hi) * ops.tanh(hj)
        hh = ops.tanh(hc) * ops.sigmoid(ho)

        e, u = self.embedding_size, self.units
        zw = ops.reshape(ops.matmul(hh, w["zw"]) + w["zw_bias"], (-1, 8, e))
        scale = ops.einsum("bge,geu->bgu", zw, w["alpha"])  # (rows, 8, units)
        zb = ops.reshape(ops.matmul(hh, w["zb"]), (-1, 4, e))
        shift = ops.einsum("bge,geu->bgu", zb, w["beta"])  # (rows, 4, units)

        x_part = ops.reshape(xw, (-1, 4, u)) * scale[:, :4]
        h_part = ops.reshape(main, (-1, 4, u)) * scale[:, 4:] + shift
        z = ops.reshape(x_part + h_part, ops.shape(xw)) + w["bias"]
        z = _layer_norm(z, w["ln_gamma"], w["ln_beta"], 4)
        c, o = _update_cell(z, c, keep)
        h = ops.tanh(_layer_norm(c, w["ln_c_gamma"], w["ln_c_beta"], 1)) * ops.sigmoid(o)
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


def run_cell(cell, x, initial_state, keep=None, gradient: str = "auto"):
    """Run `cell` over batch-major inputs x (B, T, D) from `initial_state` (a tuple).

    keep: optional (B, T, units) recurrent-dropout multipliers (0 or 1/keep_prob).
    gradient: "batched", "autodiff" or "auto", how the loop is differentiated (same values;
    auto: autodiff for the HyperLSTM, whose element-wise part holds products of its own and
    is slower batched, batched for the others).
    Returns (final_state, states) where states is the tuple of per-step states, each (B, T, ...).
    """
    if gradient not in RECURRENCE_GRADIENTS:
        raise ValueError(f"gradient must be one of {RECURRENCE_GRADIENTS}, not {gradient!r}")
    if gradient == "auto":
        gradient = "autodiff" if isinstance(cell, HyperLSTMCell) else "batched"
    # time-major: the loop reads one (B, ...) slice per step
    xs = cell.project_inputs(ops.transpose(x, (1, 0, 2)))
    if keep is not None:
        xs += (ops.transpose(keep, (1, 0, 2)),)

    def pointwise(state, recurrent, step_inputs, weights):
        if keep is None:
            return cell.pointwise(state, recurrent, step_inputs, None, weights)
        return cell.pointwise(state, recurrent, step_inputs[:-1], step_inputs[-1], weights)

    init, kernel, weights = tuple(initial_state), cell.recurrent_kernel(), cell.pointwise_weights()
    if gradient == "batched" and keras.backend.backend() in ("tensorflow", "jax"):
        states = _batched_recurrence(pointwise, xs, init, kernel, weights, cell.matmul_dtype)
    else:
        def body(state, step_inputs):
            recurrent = _matmul(state[0], kernel, cell.matmul_dtype)
            new = pointwise(state, recurrent, step_inputs, weights)
            return new, new

        _, states = _scan(body, init, xs)
    return tuple(s[-1] for s in states), tuple(ops.transpose(s, (1, 0, 2)) for s in states)


def _batched_recurrence(pointwise, xs: tuple, init: tuple, kernel, weights: dict, dtype: str):
    """The states (a tuple, each (T, ...)) of the loop state_t = pointwise(state_{t-1},
    h_{t-1} @ kernel, xs_t, weights), h being a state's first part, with the "batched"
    gradient.

    The forward pass keeps each step's product r_t. The backward loop carries only the state's
    gradient: at each step, the element-wise part's vector-Jacobian product gives the gradients
    of the previous state, of r_t and of xs_t, and dh_{t-1} gains dr_t @ kernel^T. After the
    loop, the kernel's gradient is the sum over steps of h_{t-1}^T @ dr_t as one large product
    instead of T small ones, and the element-wise weights' gradients come from one vectorised
    pass over all steps.
    """
    names = list(weights)
    counts = len(xs), len(init)
    # plain tensors in, so that the framework sees no variable read inside the custom gradient
    kernel = ops.copy(kernel)
    values = [ops.copy(weights[name]) for name in names]

    @ops.custom_gradient
    def recurrence(*args):
        xs, init = args[:counts[0]], args[counts[0]:sum(counts)]
        kernel, values = args[sum(counts)], args[sum(counts) + 1:]
        w = dict(zip(names, values))

        def forward(state, step_inputs):
            recurrent = _matmul(state[0], kernel, dtype)
            new = pointwise(state, recurrent, step_inputs, w)
            return new, (new, recurrent)

        _, (states, recurrents) = _scan(forward, init, xs, sliced=True)

        def grad(*upstream):
            if len(upstream) == 1 and isinstance(upstream[0], (tuple, list)):
                upstream = upstream[0]  # JAX passes one structure, TensorFlow one per output
            upstream = tuple(ops.zeros_like(s) if u is None else ops.convert_to_tensor(u)
                             for u, s in zip(upstream, states))
            previous = tuple(ops.concatenate([s0[None], s[:-1]], axis=0)
                             for s0, s in zip(init, states))
            kernel_t = ops.swapaxes(kernel, -1, -2)

            def backward(d_next, inputs):
                d_out, state, recurrent, step_inputs = inputs
                g = tuple(a + b for a, b in zip(d_out, d_next))
                d_state, d_recurrent, d_inputs = _vjp(
                    lambda s, r, x: pointwise(s, r, x, w), (state, recurrent, step_inputs), g)
                d_h = d_state[0] + _matmul(d_recurrent, kernel_t, dtype)
                # g is kept only for the element-wise weights' gradients, if there are any
                return (d_h,) + tuple(d_state[1:]), (g if names else (), d_recurrent, d_inputs)

            d_init, (gs, d_recurrents, d_xs) = _scan(
                backward, tuple(ops.zeros_like(s) for s in init),
                (upstream, previous, recurrents, xs), reverse=True, sliced=True)
            d_kernel = _matmul(ops.transpose(_rows(previous[0])), _rows(d_recurrents), dtype)
            d_values = ()
            if names:
                d_values = _vjp(lambda *v: pointwise(previous, recurrents, xs, dict(zip(names, v))),
                                tuple(values), gs)
            return (*d_xs, *d_init, ops.cast(d_kernel, kernel.dtype), *d_values)

        return states, grad

    return recurrence(*xs, *init, kernel, *values)


def _rows(a):
    """(T, B, n) -> (T*B, n): every step's rows as one batch."""
    return ops.reshape(a, (-1, a.shape[-1]))


def _scan(f, init, xs, reverse: bool = False, sliced: bool = False):
    """keras.ops.scan's contract, f(carry, x) -> (carry, y) with the ys stacked on a new first
    axis, for nested carries, inputs and outputs. On TensorFlow it is a plain while loop with
    the carry in loop variables: keras' own keeps the carry in a TensorArray, wants each y
    shaped like the carry and cannot take several inputs of unknown length. sliced: read the
    inputs by slicing, which copies nothing but which autodiff handles badly (a full-size
    gradient per step), for loops that autodiff never sees; otherwise through TensorArrays."""
    if keras.backend.backend() != "tensorflow":
        return ops.scan(f, init, xs, reverse=reverse)
    import tensorflow as tf

    xs_flat = tree.flatten(xs)
    n = tf.shape(xs_flat[0])[0]
    if sliced:
        def at(i):
            return tree.pack_sequence_as(xs, [x[i] for x in xs_flat])
    else:
        reads = [tf.TensorArray(x.dtype, size=n, element_shape=x.shape[1:]).unstack(x)
                 for x in xs_flat]

        def at(i):
            return tree.pack_sequence_as(xs, [r.read(i) for r in reads])

    # the first step runs before the loop, so that the outputs' shapes and dtypes are known
    first = n - 1 if reverse else 0
    carry, y = f(init, at(first))
    writes = [tf.TensorArray(v.dtype, size=n, element_shape=v.shape).write(first, v)
              for v in tree.flatten(y)]

    def body(i, carry, writes):
        index = n - 1 - i if reverse else i
        carry, y = f(tree.pack_sequence_as(init, carry), at(index))
        return i + 1, tree.flatten(carry), [w.write(index, v) for w, v in zip(writes, tree.flatten(y))]

    _, carry, writes = tf.while_loop(lambda i, *_: i < n, body, (1, tree.flatten(carry), writes))
    return tree.pack_sequence_as(init, carry), tree.pack_sequence_as(y, [w.stack() for w in writes])


def _vjp(fn, primals: tuple, cotangent) -> tuple:
    """The gradients of sum(fn(*primals) * cotangent) with respect to each primal."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.vjp(fn, *primals)[1](cotangent)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(primals)
        out = fn(*primals)
    return tuple(tape.gradient(out, primals, output_gradients=cotangent,
                               unconnected_gradients=tf.UnconnectedGradients.ZERO))


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
