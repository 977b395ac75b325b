"""The model: reference defaults, schedules, bucketed = padded loss, numpy sampler = Keras."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from sketch_model.config import HParams
from sketch_model.datasets import pad_batch
from sketch_model.losses import reconstruction_loss
from sketch_model.model import (SketchRNN, build_model, kl_weight_at, learning_rate_at,
                                reverse_within_length)
from sketch_model.sample import Sketcher
from tests.helpers import sheep, tiny_hparams

REFERENCE_DEFAULTS = dict(  # magenta/sketch_rnn/model.py get_default_hparams()
    max_seq_len=250, dec_rnn_size=512, dec_model="lstm", enc_rnn_size=256, enc_model="lstm",
    z_size=128, kl_weight=0.5, kl_weight_start=0.01, kl_tolerance=0.2, batch_size=100,
    grad_clip=1.0, num_mixture=20, learning_rate=0.001, decay_rate=0.9999, kl_decay_rate=0.99995,
    min_learning_rate=0.00001, use_recurrent_dropout=True, recurrent_dropout_prob=0.90,
    use_input_dropout=False, input_dropout_prob=0.90, use_output_dropout=False,
    output_dropout_prob=0.90, random_scale_factor=0.15, augment_stroke_prob=0.10,
    conditional=True, save_every=500, hyper_num_units=256, hyper_embedding_size=32)


def test_hparams_defaults_are_the_reference_ones():
    hps = dataclasses.asdict(HParams())
    assert {k: hps[k] for k in REFERENCE_DEFAULTS} == REFERENCE_DEFAULTS


def test_hparams_json_round_trip_and_overrides(tmp_path):
    hps = HParams().with_overrides(["dec_model=hyper", "z_size=64", "conditional=false"])
    assert (hps.dec_model, hps.z_size, hps.conditional) == ("hyper", 64, False)
    hps.save(tmp_path / "h.json")
    assert HParams.load(tmp_path / "h.json") == hps
    with pytest.raises(ValueError, match="z_size expects a int"):
        HParams().with_overrides(["z_size=big"])


def test_schedules_follow_the_reference_formulas():
    hps = HParams()
    for step in (0, 1, 1000, 50_000, 10**6):
        assert learning_rate_at(hps, step) == pytest.approx(
            (0.001 - 0.00001) * 0.9999 ** step + 0.00001)
        assert kl_weight_at(hps, step) == pytest.approx(0.5 - (0.5 - 0.01) * 0.99995 ** step)
    model = build_model(hps)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_reverse_within_length_keeps_padding():
    x = np.arange(12, dtype=np.float32).reshape(2, 6, 1)
    got = ops.convert_to_numpy(reverse_within_length(x, np.array([4, 6])))[..., 0]
    np.testing.assert_array_equal(got, [[3, 2, 1, 0, 4, 5], [11, 10, 9, 8, 7, 6]])


@pytest.mark.parametrize("cell", ["lstm", "layer_norm", "hyper"])
def test_bucketed_batch_loss_equals_padded_to_n_max(cell):
    """The same sketches padded to their own longest or to N_max give the same evaluation L_R,
    and in training the N_max batch adds only the pen term of its extra end-of-sketch steps."""
    hps = tiny_hparams(dec_model=cell, max_seq_len=250)
    model = SketchRNN(hps)
    sketches = sheep(n=6)
    eps = np.random.default_rng(0).standard_normal((6, hps.z_size)).astype(np.float32)
    longest = max(len(s) for s in sketches)
    evaluation, training, params = [], [], []
    for steps in (longest + 1, hps.max_seq_len):
        strokes, lengths = pad_batch(sketches, steps)
        out = model({"strokes": strokes, "lengths": lengths, "eps": eps})
        for losses, over_padding in ((evaluation, False), (training, True)):
            losses.append(float(reconstruction_loss(strokes[:, 1:], lengths, out["params"],
                                                    hps.num_mixture, hps.max_seq_len, over_padding)))
        params.append(ops.convert_to_numpy(out["params"]).astype(np.float64))
    assert evaluation[0] == pytest.approx(evaluation[1], rel=1e-5)
    logits = params[1][:, longest + 1:, :3]  # steps only the N_max batch has; their target is p3
    extra = -(logits[..., 2] - np.log(np.exp(logits).sum(axis=-1))).sum() / (6 * hps.max_seq_len)
    assert training[1] - training[0] == pytest.approx(extra, rel=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "layer_norm", "hyper"])
@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("position_input", [False, True])
def test_numpy_sampler_matches_keras_model(cell, conditional, position_input):
    """The numpy decoding path gives the Keras model's numbers for the same weights."""
    hps = tiny_hparams(dec_model=cell, conditional=conditional, seed=3,
                       position_input=position_input)
    model = SketchRNN(hps)
    sketcher = Sketcher(model, scale_factor=1.0)
    sketches = sheep(n=3)
    strokes, lengths = pad_batch(sketches, max(len(s) for s in sketches) + 1)
    z = None
    if conditional:
        mu, _ = model.encode(strokes[:, 1:], lengths)
        mu = ops.convert_to_numpy(mu)
        np.testing.assert_allclose(sketcher.encode_many(sketches), mu, atol=2e-5)
        z = mu
    raw, _ = model.decode(strokes[:, :-1], z, model.initial_state(z, 3))
    state = sketcher._initial(z, 3)
    _, h = sketcher.decoder.run(sketcher._inputs(strokes[:, :-1], z)[0], state)
    np_raw = h @ sketcher.head[0] + sketcher.head[1]
    np.testing.assert_allclose(np_raw, ops.convert_to_numpy(raw), atol=5e-5)


def test_position_input_carries_the_pen_position_from_step_to_step():
    """Decoding one row at a time, as sampling does, gives the whole sequence's numbers only if
    the absolute position is carried over; the position fed is the running sum of the moves."""
    hps = tiny_hparams(position_input=True, seed=4)
    model = SketchRNN(hps)
    sketcher = Sketcher(model, scale_factor=1.0)
    strokes, _ = pad_batch([s[:39] for s in sheep(n=2)], 40)
    z = np.random.default_rng(0).standard_normal((2, hps.z_size)).astype(np.float32)
    raw, _ = model.decode(strokes, z, model.initial_state(z, 2))
    state, position = sketcher._initial(z, 2), None
    heads = []
    for t in range(strokes.shape[1]):
        inputs, position = sketcher._inputs(strokes[:, t:t + 1], z, position)
        np.testing.assert_allclose(inputs[:, 0, -2:], 0.1 * strokes[:, :t + 1, :2].sum(axis=1),
                                   atol=1e-5)
        state, h = sketcher.decoder.run(inputs, state)
        heads.append(h[:, -1] @ sketcher.head[0] + sketcher.head[1])
    np.testing.assert_allclose(np.stack(heads, axis=1), ops.convert_to_numpy(raw), atol=5e-5)
    blind = SketchRNN(tiny_hparams(seed=4))  # the same weights without the position rows
    for mine, theirs in zip(blind.weights, model.weights):
        value = ops.convert_to_numpy(theirs)
        mine.assign(value if value.shape == tuple(mine.shape) else value[:mine.shape[0]])
    assert not np.allclose(ops.convert_to_numpy(blind.decode(strokes, z, blind.initial_state(z, 2))[0]),
                           ops.convert_to_numpy(raw), atol=1e-3)


def test_history_noise_targets_lead_back_to_the_true_path():
    """Training with history_noise: the decoder reads true points plus noise of the given
    spread at points 1 .. length-1 only, each target move goes from the noisy point to the true
    next point, and the pen states are those of the data."""
    sigma = 0.3
    model = SketchRNN(tiny_hparams(history_noise=sigma))
    sketches = sheep(n=20)
    strokes, lengths = pad_batch(sketches, 250)
    noisy, target = (ops.convert_to_numpy(a) for a in model._noisy_history(strokes, lengths))
    true_points = np.cumsum(strokes[..., :2], axis=1)
    noisy_points = np.cumsum(noisy[..., :2], axis=1)
    eta = noisy_points - true_points
    inside = (np.arange(strokes.shape[1])[None] >= 1) & (np.arange(strokes.shape[1])[None] < lengths[:, None])
    assert np.allclose(eta[~inside], 0.0, atol=1e-4)
    assert np.std(eta[inside]) == pytest.approx(sigma, rel=0.05)
    np.testing.assert_allclose(noisy_points[:, :-1] + target[..., :2], true_points[:, 1:], atol=1e-4)
    np.testing.assert_array_equal(noisy[..., 2:], strokes[..., 2:])
    np.testing.assert_array_equal(target[..., 2:], strokes[:, 1:, 2:])


@pytest.mark.parametrize("cell", ["lstm", "layer_norm", "hyper"])
def test_bfloat16_products_change_the_numbers_only_by_their_rounding(cell):
    """matmul_dtype=bfloat16 rounds the products' operands (7 stored mantissa bits, relative
    error up to 2^-8) and nothing else: same weights, a loss within 0.1% and gradients within 3% of
    float32's (measured: 0.4% to 1%), but not identical ones, so the bfloat16 path ran."""
    sketches = sheep(n=6)
    strokes, lengths = pad_batch(sketches, max(len(s) for s in sketches) + 1)
    inputs = {"strokes": strokes, "lengths": lengths,
              "eps": np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)}
    results = []
    for dtype in ("float32", "bfloat16"):
        model = SketchRNN(tiny_hparams(dec_model=cell, max_seq_len=250, matmul_dtype=dtype))
        with tf.GradientTape() as tape:
            out = model(inputs)
            loss = reconstruction_loss(strokes[:, 1:], lengths, out["params"], 3, 250)
        grads = tape.gradient(loss, model.trainable_variables)
        results.append((float(loss), np.concatenate([np.ravel(g) for g in grads]),
                        [ops.convert_to_numpy(w) for w in model.weights]))
    (loss32, grad32, weights32), (loss16, grad16, weights16) = results
    assert all(np.array_equal(a, b) for a, b in zip(weights32, weights16))
    assert loss16 != loss32 and loss16 == pytest.approx(loss32, rel=1e-3)
    assert np.all(np.isfinite(grad16))
    assert np.linalg.norm(grad16 - grad32) < 0.03 * np.linalg.norm(grad32)


def test_matmul_dtype_is_checked():
    with pytest.raises(ValueError, match="matmul_dtype must be float32 or bfloat16"):
        HParams(matmul_dtype="float16")


def test_history_noise_trains_but_leaves_evaluation_clean():
    """The noise is drawn in training steps only: evaluation gives the numbers of the same
    weights without the option, and a model with both options trains and draws."""
    sketches = sheep(n=8)
    strokes, lengths = pad_batch(sketches, max(len(s) for s in sketches) + 1)
    batch = {"strokes": strokes, "lengths": lengths,
             "eps": np.zeros((8, 8), np.float32)}
    noisy = build_model(tiny_hparams(position_input=True, history_noise=0.5))
    clean = SketchRNN(tiny_hparams(position_input=True))
    clean.set_weights(noisy.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(noisy(batch)["params"]),
                               ops.convert_to_numpy(clean(batch)["params"]), atol=1e-6)
    assert np.isfinite(noisy.train_on_batch(batch, return_dict=True)["loss"])
    drawings = Sketcher(noisy, 1.0).generate(n=2, temperature=0.5, seed=0)
    assert all(np.all(np.isfinite(d)) for d in drawings)


@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf")])
def test_history_noise_is_checked(noise):
    with pytest.raises(ValueError, match="history_noise must be a finite number"):
        HParams(history_noise=noise)


@pytest.mark.parametrize("temperature, pen_temperature", [(0.3, 1.0), (0.3, 0.3), (1.0, 0.5)])
def test_pen_and_mixture_are_sampled_at_their_own_temperatures(temperature, pen_temperature):
    """With a head that ignores the state, the first step's pen state and mixture component
    follow softmax(logits / pen_temperature) and softmax(logits / temperature)."""
    hps = tiny_hparams(conditional=False, num_mixture=3, seed=1)
    sketcher = Sketcher(SketchRNN(hps), scale_factor=1.0)
    kernel, bias = sketcher.head
    bias = np.zeros_like(bias)
    pen_logits, pi_logits = np.array([0.5, 0.0, -1.0]), np.array([1.0, 0.0, -30.0])
    bias[:3], bias[3:6] = pen_logits, pi_logits
    bias[6:9] = [1.0, -1.0, 0.0]  # mu_x: the component shows in the sign of dx
    bias[12:18] = -10.0  # log sigma: all but exact moves
    sketcher.head = (np.zeros_like(kernel), bias)
    n = 4000
    first = [d[0] if len(d) else None for d in sketcher.generate(n, temperature, seed=5,
                                                                 pen_temperature=pen_temperature)]

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    pen = softmax(pen_logits / pen_temperature)
    seen_pen = np.array([np.mean([r is not None and r[2] == 0 for r in first]),
                         np.mean([r is not None and r[2] == 1 for r in first]),
                         np.mean([r is None for r in first])])
    np.testing.assert_allclose(seen_pen, pen, atol=4 * np.sqrt(0.25 / n))
    drawn = [r for r in first if r is not None]
    component0 = softmax(pi_logits[:2] / temperature)[0]
    assert np.mean([r[0] > 0 for r in drawn]) == pytest.approx(component0, abs=4 * np.sqrt(0.25 / len(drawn)))
