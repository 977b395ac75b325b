"""The sketch-rnn model (Ha & Eck 2017): a bidirectional-LSTM encoder to a latent z, a
recurrent decoder whose initial state is tanh(W z + b) and whose every input carries z, and a
mixture-density head of `num_mixture` bivariate Gaussians plus a 3-way pen state.

Inputs are dicts: "strokes" (B, T+1, 5) stroke-5 with the start token (0, 0, 1, 0, 0) in row
0, "lengths" (B,) points per sketch, and optionally "eps" (B, z_size), the noise for z.

Four options are not in the paper (all off by default): `position_input` gives the decoder
the pen's absolute position at every step as well, `history_noise` trains it on noisy
absolute points with targets back to the true path, so that a copy which has drifted off its
input's path learns to come back to it, `encode_prefix_prob` trains the encoder on random
prefixes of some sketches (the decoder still learns the whole; a whole sketch's last point is
marked as its end), so that a partial drawing's z stands for the drawings it could become,
and `train_encoder_only` keeps the decoder's weights as they are (to teach a trained VAE's
encoder partial drawings without changing how it draws).
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from .cells import Linear, make_cell, run_cell
from .config import POSITION_SCALE, HParams
from .losses import kl_loss, reconstruction_loss


def reverse_within_length(x, lengths):
    """Reverse each sequence of x (B, T, D) within its first `length` steps; padding stays put."""
    steps = ops.arange(ops.shape(x)[1])[None, :]
    lengths = ops.cast(lengths, "int32")[:, None]
    index = ops.where(steps < lengths, lengths - 1 - steps, steps)
    return ops.take_along_axis(x, ops.expand_dims(index, -1), axis=1)


def mark_ends(strokes, lengths, whole):
    """strokes (B, T, 5) with the pen of the last point of each sketch where `whole` (B,) is
    true set to end-of-sketch (0, 0, 1): what a model trained with encode_prefix_prob reads, so
    that a whole drawing, whose last point is otherwise a pen lift like the end of any stroke,
    differs from a prefix cut after a stroke."""
    steps = ops.arange(ops.shape(strokes)[1])[None, :]
    last = (steps == ops.cast(lengths, "int32")[:, None] - 1) & whole[:, None]
    ended = ops.concatenate([strokes[..., :2], ops.zeros_like(strokes[..., 2:4]),
                             ops.ones_like(strokes[..., 4:])], axis=-1)
    return ops.where(last[..., None], ended, strokes)


def last_step(states, lengths):
    """The state at step length-1 of each sequence; states is (B, T, D)."""
    index = ops.maximum(ops.cast(lengths, "int32") - 1, 0)
    return ops.take_along_axis(states, index[:, None, None], axis=1)[:, 0, :]


@keras.saving.register_keras_serializable(package="sketch_model")
class SketchRNN(keras.Model):
    """The seq2seq VAE (conditional) or the decoder-only model (unconditional)."""

    def __init__(self, hparams: HParams | dict, **kwargs):
        super().__init__(**kwargs)
        hps = hparams if isinstance(hparams, HParams) else HParams.from_dict(hparams)
        self.hps = hps
        rng = np.random.default_rng(hps.seed)
        if hps.conditional:
            self.enc_fw = make_cell(hps.enc_model, hps.enc_rnn_size, 5, rng, name="enc_fw",
                                    matmul_dtype=hps.matmul_dtype)
            self.enc_bw = make_cell(hps.enc_model, hps.enc_rnn_size, 5, rng, name="enc_bw",
                                    matmul_dtype=hps.matmul_dtype)
            self.to_mu = Linear(2 * hps.enc_rnn_size, hps.z_size, rng, std=0.001, name="mu")
            self.to_presig = Linear(2 * hps.enc_rnn_size, hps.z_size, rng, std=0.001, name="presig")
        dec_input = 5 + (hps.z_size if hps.conditional else 0) + (2 if hps.position_input else 0)
        self.decoder = make_cell(hps.dec_model, hps.dec_rnn_size, dec_input, rng,
                                 hps.hyper_num_units, hps.hyper_embedding_size, name="decoder",
                                 matmul_dtype=hps.matmul_dtype)
        if hps.conditional:
            self.to_state = Linear(hps.z_size, self.decoder.state_size, rng, std=0.001,
                                   name="initial_state")
        self.head = Linear(hps.dec_rnn_size, 3 + 6 * hps.num_mixture, rng, name="mixture_head")
        self.seed_generator = keras.random.SeedGenerator(hps.seed)
        self.kl_weight = keras.Variable(hps.kl_weight_start, trainable=False, name="kl_weight")
        self.l_r_tracker = keras.metrics.Mean(name="L_R")
        self.l_kl_tracker = keras.metrics.Mean(name="L_KL")
        self.built = True

    def get_config(self) -> dict:
        return {"hparams": self.hps.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "SketchRNN":
        return cls(HParams.from_dict(config["hparams"]), name=config.get("name"))

    def _keep_mask(self, shape, keep_prob: float):
        """Dropout multipliers: 0 with probability 1 - keep_prob, else 1 / keep_prob."""
        u = keras.random.uniform(shape, seed=self.seed_generator)
        return ops.cast(u < keep_prob, "float32") / keep_prob

    def _recurrent_keep(self, batch, steps, units, training):
        if training and self.hps.use_recurrent_dropout and self.hps.recurrent_dropout_prob < 1.0:
            return self._keep_mask((batch, steps, units), self.hps.recurrent_dropout_prob)
        return None

    def encode(self, strokes, lengths, training: bool = False, read=None):
        """(mu, presig) of q(z | sketch); strokes (B, T, 5) without the start token. `read`
        (B,): how many points of each sketch the encoder reads (default: all). A model trained
        with encode_prefix_prob reads a whole sketch with its end marked (mark_ends)."""
        lengths = ops.cast(lengths, "int32")
        read = lengths if read is None else ops.cast(read, "int32")
        if self.hps.encode_prefix_prob > 0:
            strokes = mark_ends(strokes, lengths, whole=read == lengths)
        batch, steps = ops.shape(strokes)[0], ops.shape(strokes)[1]
        units = self.hps.enc_rnn_size
        zeros = ops.zeros((batch, units))
        gradient = self.hps.recurrence_gradient
        _, fw = run_cell(self.enc_fw, strokes, (zeros, zeros),
                         self._recurrent_keep(batch, steps, units, training), gradient)
        _, bw = run_cell(self.enc_bw, reverse_within_length(strokes, read), (zeros, zeros),
                         self._recurrent_keep(batch, steps, units, training), gradient)
        last_h = ops.concatenate([last_step(fw[0], read), last_step(bw[0], read)], axis=-1)
        return self.to_mu(last_h), self.to_presig(last_h)

    def initial_state(self, z, batch):
        """Decoder state tanh(W z + b) for a VAE, zeros for an unconditional model."""
        if self.hps.conditional:
            return self.decoder.split_state(ops.tanh(self.to_state(z)))
        return self.decoder.split_state(ops.zeros((batch, self.decoder.state_size)))

    def decode(self, inputs, z, state, training: bool = False):
        """Run the decoder over stroke-5 inputs (B, T, 5) from `state`; returns (raw, final)."""
        batch, steps = ops.shape(inputs)[0], ops.shape(inputs)[1]
        parts = [inputs]
        if self.hps.conditional:
            parts.append(ops.broadcast_to(ops.expand_dims(z, 1), (batch, steps, self.hps.z_size)))
        if self.hps.position_input:
            parts.append(ops.cumsum(inputs[..., :2], axis=1) * POSITION_SCALE)
        inputs = ops.concatenate(parts, axis=-1) if len(parts) > 1 else inputs
        if training and self.hps.use_input_dropout:
            inputs = inputs * self._keep_mask(ops.shape(inputs), self.hps.input_dropout_prob)
        keep = self._recurrent_keep(batch, steps, self.hps.dec_rnn_size, training)
        final, states = run_cell(self.decoder, inputs, state, keep,
                                 self.hps.recurrence_gradient)
        h = states[0]
        if training and self.hps.use_output_dropout:
            h = h * self._keep_mask(ops.shape(h), self.hps.output_dropout_prob)
        return self.head(h), final

    def call(self, inputs, training: bool = False):
        strokes, lengths = inputs["strokes"], inputs["lengths"]
        batch = ops.shape(strokes)[0]
        out = {}
        z = None
        if self.hps.conditional:
            read = None
            if training and self.hps.encode_prefix_prob > 0:
                read = self._prefix_lengths(strokes[:, 1:], lengths)
            mu, presig = self.encode(strokes[:, 1:], lengths, training, read)
            eps = inputs.get("eps")
            if eps is None:
                eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
            z = mu + ops.exp(presig / 2.0) * eps
            out.update(mu=mu, presig=presig)
        if training and self.hps.history_noise > 0:
            strokes, out["targets"] = self._noisy_history(strokes, lengths)
        raw, _ = self.decode(strokes[:, :-1], z, self.initial_state(z, batch), training)
        out["params"] = raw
        return out

    def _prefix_lengths(self, strokes, lengths):
        """The lengths the encoder reads in training with encode_prefix_prob: with that
        probability, a sketch's prefix up to one of its stroke ends (a pen lift before its last
        point), drawn uniformly; otherwise, or for a sketch of one stroke, its whole length.
        strokes (B, T, 5) without the start token. The encoder reads nothing past a length,
        so it sees exactly the prefix."""
        lengths = ops.cast(lengths, "int32")
        steps = ops.arange(ops.shape(strokes)[1])[None, :]
        lift = (strokes[..., 3] > 0.5) & (steps < lengths[:, None] - 1)
        score = (keras.random.uniform(ops.shape(strokes)[:2], seed=self.seed_generator)
                 + ops.cast(lift, "float32"))  # the largest is a uniformly drawn stroke end
        cut = ops.cast(ops.argmax(score, axis=1), "int32") + 1
        chosen = (keras.random.uniform(ops.shape(lengths), seed=self.seed_generator)
                  < self.hps.encode_prefix_prob)
        return ops.where(chosen & ops.any(lift, axis=1), cut, lengths)

    def _noisy_history(self, strokes, lengths):
        """(inputs (B, T+1, 5), targets (B, T, 5)): Gaussian noise eta_k on each absolute point
        P_k the decoder reads (k = 1 .. length-1), so input move k becomes x_k + eta_k -
        eta_{k-1}, and target move k+1 becomes x_{k+1} - eta_k, from the noisy point back to
        the true next one. Pen states are unchanged."""
        steps = ops.arange(ops.shape(strokes)[1])[None, :]
        inside = (steps >= 1) & (steps < ops.cast(lengths, "int32")[:, None])
        eta = keras.random.normal(ops.shape(strokes[..., :2]), stddev=self.hps.history_noise,
                                  seed=self.seed_generator)
        eta = eta * ops.cast(inside, eta.dtype)[..., None]
        before = ops.pad(eta[:, :-1], ((0, 0), (1, 0), (0, 0)))  # eta_{k-1}
        noisy = ops.concatenate([strokes[..., :2] + eta - before, strokes[..., 2:]], axis=-1)
        target = ops.concatenate([strokes[..., :2] - before, strokes[..., 2:]], axis=-1)
        return noisy, target[:, 1:]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Total loss L_R + w_KL * max(KL, kl_tolerance), as the reference trains."""
        target = y_pred.get("targets", x["strokes"][:, 1:])
        l_r = reconstruction_loss(target, x["lengths"], y_pred["params"],
                                  self.hps.num_mixture, self.hps.max_seq_len,
                                  pen_over_padding=True)
        if self.hps.conditional:
            l_kl = ops.maximum(kl_loss(y_pred["mu"], y_pred["presig"]), self.hps.kl_tolerance)
        else:
            l_kl = ops.zeros(())
        self.l_r_tracker.update_state(l_r)
        self.l_kl_tracker.update_state(l_kl)
        loss = l_r + ops.cast(self.kl_weight, l_r.dtype) * l_kl
        # Under tf.distribute Keras sums the replicas' gradients, so each replica's share of a
        # batch-mean loss is 1/replicas of it (Keras' own losses do the same).
        return loss / _replicas_in_sync()


def _replicas_in_sync() -> int:
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def learning_rate_at(hps: HParams, step):
    """The reference's schedule: (lr - min_lr) * decay_rate^step + min_lr."""
    return (hps.learning_rate - hps.min_learning_rate) * hps.decay_rate ** step + hps.min_learning_rate


def kl_weight_at(hps: HParams, step):
    """The reference's KL annealing: w - (w - w_start) * kl_decay_rate^step."""
    return hps.kl_weight - (hps.kl_weight - hps.kl_weight_start) * hps.kl_decay_rate ** step


@keras.saving.register_keras_serializable(package="sketch_model")
class ReferenceSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """learning_rate_at as a Keras schedule driven by the optimizer's step count."""

    def __init__(self, learning_rate: float, decay_rate: float, min_learning_rate: float):
        self.learning_rate = learning_rate
        self.decay_rate = decay_rate
        self.min_learning_rate = min_learning_rate

    def __call__(self, step):
        step = ops.cast(step, "float32")
        return ((self.learning_rate - self.min_learning_rate) * ops.power(self.decay_rate, step)
                + self.min_learning_rate)

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "decay_rate": self.decay_rate,
                "min_learning_rate": self.min_learning_rate}


class ReplicaSafeLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' LossScaleOptimizer with one skip decision for all tf.distribute replicas: Keras
    takes the first replica's finite check, before the gradients are summed, so NaN gradients
    of another replica would reach the weights (mirrored) or the replicas would take different
    branches and wait for each other forever (multi-worker)."""

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        if keras.backend.backend() != "tensorflow":
            return finite
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return finite
        bad = context.all_reduce("SUM", ops.cast(ops.logical_not(finite), "float32"))
        return ops.equal(bad, 0.0)


def build_model(hps: HParams) -> SketchRNN:
    """A compiled model: Adam on the reference's schedule with per-value gradient clipping
    (on the encoder's weights alone with train_encoder_only).

    Adam is wrapped in Keras' LossScaleOptimizer with a scale of 1 that never grows, for one
    property: a step whose gradients hold NaN or inf is skipped on every backend and never
    reaches the weights. A skip halves the scale; the training loop counts it and sets it back.
    """
    model = SketchRNN(hps)
    if hps.train_encoder_only:  # a setting of training: the model it saves is a plain one
        for layer in (model.decoder, model.to_state, model.head):
            layer.trainable = False
    schedule = ReferenceSchedule(hps.learning_rate, hps.decay_rate, hps.min_learning_rate)
    adam = keras.optimizers.Adam(schedule, clipvalue=hps.grad_clip)
    model.compile(optimizer=ReplicaSafeLossScaleOptimizer(
        adam, initial_scale=1.0, dynamic_growth_steps=2**31 - 1))
    return model


def take_skipped_step(model: SketchRNN) -> bool:
    """True if the last step was skipped for non-finite gradients (and re-arm the optimizer)."""
    scale = model.optimizer.dynamic_scale
    if float(ops.convert_to_numpy(scale)) == 1.0:
        return False
    scale.assign(1.0)
    return True
