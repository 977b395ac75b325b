"""The "batched" gradient of the recurrence (the default for lstm and layer_norm cells)
against the framework's autodiff through every step ("autodiff", the old path): one training
step on a real, bucketed batch of sheep gives the same loss and the same gradient for every
weight, for all three cells."""

import numpy as np
import pytest
import tensorflow as tf

from sketch_model.cells import make_cell, run_cell
from sketch_model.config import HParams
from sketch_model.datasets import Batcher
from sketch_model.model import SketchRNN
from tests.helpers import sheep, tiny_hparams

RELATIVE = 1e-5  # the bound, float32


def one_step(hps: HParams, strokes: np.ndarray, lengths: np.ndarray):
    """(loss, {weight path: gradient}) of one training step, dropout and z noise included,
    from the initial weights moved by the same noise (so that the hyper network, whose output
    weights start at zero, takes part)."""
    model = SketchRNN(hps)
    rng = np.random.default_rng(7)
    for v in model.trainable_variables:
        v.assign(v + 0.05 * rng.standard_normal(v.shape).astype(np.float32))
    x = {"strokes": tf.constant(strokes), "lengths": tf.constant(lengths)}
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y_pred=model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), {v.path: np.asarray(g) for v, g in zip(model.trainable_variables, grads)}


@pytest.fixture(scope="module")
def batch():
    """8 real sheep, scaled and augmented as in training, padded to a multiple of 10 steps."""
    hps = tiny_hparams()
    strokes, lengths = Batcher(sheep(n=40), 8, hps.max_seq_len, seed=3,
                               random_scale_factor=0.15, augment_stroke_prob=0.1,
                               bucket_width=10).batch(0)
    assert (strokes.shape[1] - 1) % 10 == 0 and lengths.max() <= strokes.shape[1] - 1
    assert lengths.min() < lengths.max()  # padding inside the batch
    return strokes, lengths


@pytest.mark.parametrize("cell", ["lstm", "layer_norm", "hyper"])
@pytest.mark.parametrize("conditional", [True, False])
def test_one_step_gives_the_loss_and_gradients_of_autodiff(batch, cell, conditional):
    hps = tiny_hparams(dec_model=cell, conditional=conditional, use_recurrent_dropout=True,
                       use_input_dropout=True, use_output_dropout=True,
                       enc_model="layer_norm" if cell == "layer_norm" else "lstm")
    loss_old, old = one_step(hps.replace(recurrence_gradient="autodiff"), *batch)
    loss_new, new = one_step(hps.replace(recurrence_gradient="batched"), *batch)
    assert loss_new == pytest.approx(loss_old, rel=RELATIVE)
    assert old.keys() == new.keys()
    for name, reference in old.items():
        scale = np.abs(reference).max()
        assert scale > 0, f"{name} gets no gradient"  # every weight takes part
        assert np.abs(new[name] - reference).max() <= RELATIVE * scale, name


def test_the_loop_outputs_and_input_gradients_agree_for_a_lone_cell():
    """run_cell itself: the states every step and the gradients of the inputs, the initial
    state and the weights, from a loss that reads every state part (h and c)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 7, 5)).astype(np.float32))
    keep = tf.constant((rng.random((3, 7, 6)) < 0.8).astype(np.float32) / 0.8)
    h0 = tf.constant(rng.normal(size=(3, 6)).astype(np.float32))
    c0 = tf.constant(rng.normal(size=(3, 6)).astype(np.float32))
    results = {}
    for gradient in ("autodiff", "batched"):
        cell = make_cell("layer_norm", 6, 5, np.random.default_rng(1))
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            final, states = run_cell(cell, x, (h0, c0), keep, gradient)
            loss = tf.reduce_sum(states[0] ** 2) + tf.reduce_sum(tf.sin(states[1])) + tf.reduce_sum(final[1])
        grads = tape.gradient(loss, [x, h0, c0] + cell.trainable_variables)
        results[gradient] = [np.asarray(s) for s in states + final] + [np.asarray(g) for g in grads]
    for a, b in zip(results["autodiff"], results["batched"]):
        assert np.abs(b - a).max() <= RELATIVE * np.abs(a).max()


def test_an_unknown_gradient_is_refused():
    with pytest.raises(ValueError, match="recurrence_gradient must be auto, batched or autodiff"):
        HParams(recurrence_gradient="fast")


def test_auto_takes_autodiff_for_the_hyperlstm_only(monkeypatch):
    import sketch_model.cells as cells

    used = []
    monkeypatch.setattr(cells, "_batched_recurrence", lambda *a: used.append("batched") or None)
    monkeypatch.setattr(cells, "_scan", lambda *a, **k: used.append("autodiff") or (None, ()))
    x, h = tf.zeros((2, 3, 5)), tf.zeros((2, 4))
    for kind in ("lstm", "layer_norm", "hyper"):
        cell = make_cell(kind, 4, 5, np.random.default_rng(0), hyper_units=4, embedding_size=2)
        state = (h, h) if kind != "hyper" else (h, h, h, h)
        try:
            run_cell(cell, x, state, None, "auto")
        except TypeError:
            pass  # the stand-ins return nothing usable; only the choice is looked at
    assert used == ["batched", "batched", "autodiff"]
