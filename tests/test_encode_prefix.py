"""encode_prefix_prob: in training the encoder reads a prefix of some sketches, cut after a
stroke end, a whole sketch with its end marked, and nothing else changes. The reference is
the numpy encoder of sample.py, fed the prefixes as stroke-3 drawings; train_encoder_only
trains the encoder alone."""

import numpy as np
import pytest
from keras import ops

from sketch_model.config import HParams
from sketch_model.datasets import pad_batch
from sketch_model.model import SketchRNN, build_model
from sketch_model.sample import Sketcher
from tests.helpers import sheep, tiny_hparams


def _model(prob: float) -> SketchRNN:
    """A tiny VAE without dropout (so a training call is deterministic but for the option),
    whose mu layer is large enough for prefixes to encode far apart."""
    model = SketchRNN(tiny_hparams(encode_prefix_prob=prob, use_recurrent_dropout=False))
    rng = np.random.default_rng(1)
    model.to_mu.kernel.assign(rng.standard_normal(model.to_mu.kernel.shape).astype(np.float32))
    return model


def _batch(sketches):
    strokes, lengths = pad_batch(sketches, max(len(s) for s in sketches) + 1)
    return {"strokes": strokes, "lengths": lengths,
            "eps": np.zeros((len(sketches), 8), np.float32)}


def _candidates(sketch: np.ndarray) -> list[int]:
    """Prefix lengths that end a stroke before the last point, and the whole length last."""
    return [k + 1 for k in range(len(sketch) - 1) if sketch[k, 2] == 1] + [len(sketch)]


def _encoded_lengths(model: SketchRNN, sketches: list, mu: np.ndarray) -> list[int]:
    """For each sketch, the candidate length whose numpy encoding is mu's (and only that one)."""
    sketcher = Sketcher(model, 1.0)
    found = []
    for sketch, m in zip(sketches, mu):
        lengths = _candidates(sketch)
        reference = np.concatenate([sketcher.encode_many([sketch[:k] for k in lengths[:-1]],
                                                         whole=False),
                                    sketcher.encode_many([sketch])])
        distance = np.abs(reference - m).max(axis=1)
        order = np.argsort(distance)
        assert distance[order[0]] < 1e-4
        assert len(order) == 1 or distance[order[1]] > 1e-2
        found.append(lengths[order[0]])
    return found


def test_at_one_the_encoder_reads_a_stroke_prefix_and_the_decoder_the_whole_sketch():
    sketches = sheep(n=8)
    assert all(len(_candidates(s)) >= 3 for s in sketches)  # every sheep has strokes to cut at
    model = _model(1.0)
    batch = _batch(sketches)
    cuts = []
    for _ in range(4):
        out = model(batch, training=True)
        mu = ops.convert_to_numpy(out["mu"])
        found = _encoded_lengths(model, sketches, mu)
        assert all(k < len(s) for k, s in zip(found, sketches))  # a prefix, never the whole
        cuts.append(found)
        assert "targets" not in out  # the loss's targets are the whole sketch's moves
        # the decoder's inputs are the whole sketch's, with z = mu of the prefix (eps = 0)
        whole, _ = model.decode(batch["strokes"][:, :-1], out["mu"],
                                model.initial_state(out["mu"], len(sketches)), training=True)
        np.testing.assert_allclose(ops.convert_to_numpy(out["params"]),
                                   ops.convert_to_numpy(whole), atol=1e-5)
    assert len({tuple(c) for c in cuts}) > 1  # the cut is drawn anew at each step


def test_at_zero_and_outside_training_the_encoder_reads_the_whole_sketch():
    sketches = sheep(n=8)
    batch = _batch(sketches)
    for prob, training in ((0.0, True), (1.0, False)):
        model = _model(prob)
        mu = ops.convert_to_numpy(model(batch, training=training)["mu"])
        assert _encoded_lengths(model, sketches, mu) == [len(s) for s in sketches]


def test_a_whole_sketch_is_read_with_its_end_marked_and_a_started_one_as_it_is():
    """With the option, the encoder reads a whole sketch as a model without it reads the same
    stroke-5 rows with the last point's pen set to end-of-sketch (0, 0, 1); Sketcher.encode
    gives that for whole=True and the unmarked reading for whole=False."""
    sketches = sheep(n=6)
    batch = _batch(sketches)
    with_option, without = _model(0.5), _model(0.0)
    without.set_weights(with_option.get_weights())
    marked = batch["strokes"][:, 1:].copy()
    for row, sketch in zip(marked, sketches):
        assert row[len(sketch) - 1, 2:].tolist() == [0, 1, 0]  # the end of a stroke, as data has it
        row[len(sketch) - 1, 2:] = (0, 0, 1)
    mu = ops.convert_to_numpy(with_option.encode(batch["strokes"][:, 1:], batch["lengths"])[0])
    expected = ops.convert_to_numpy(without.encode(marked, batch["lengths"])[0])
    np.testing.assert_allclose(mu, expected, atol=1e-5)
    sketcher = Sketcher(with_option, 1.0)
    np.testing.assert_allclose(sketcher.encode_many(sketches), expected, atol=1e-4)
    np.testing.assert_allclose(sketcher.encode_many(sketches, whole=False),
                               Sketcher(without, 1.0).encode_many(sketches), atol=1e-4)
    assert np.abs(expected - sketcher.encode_many(sketches, whole=False)).max() > 1e-2


def test_the_share_of_prefixes_follows_the_probability():
    sketches = sheep(n=64)
    model = _model(0.5)
    mu = ops.convert_to_numpy(model(_batch(sketches), training=True)["mu"])
    cut = sum(k < len(s) for k, s in zip(_encoded_lengths(model, sketches, mu), sketches))
    assert 16 <= cut <= 48  # binomial(64, 0.5): 32 +- 4


def test_a_model_with_the_option_trains_and_old_hparams_read_as_off():
    model = build_model(tiny_hparams(encode_prefix_prob=0.5))
    assert np.isfinite(model.train_on_batch(_batch(sheep(n=8)), return_dict=True)["loss"])
    old = HParams().to_dict()
    del old["encode_prefix_prob"]
    assert HParams.from_dict(old).encode_prefix_prob == 0.0


@pytest.mark.parametrize("prob", [-0.1, 1.5, float("nan")])
def test_encode_prefix_prob_is_checked(prob):
    with pytest.raises(ValueError, match="encode_prefix_prob"):
        HParams(encode_prefix_prob=prob)


def test_train_encoder_only_changes_the_encoder_and_nothing_else():
    """One training step with train_encoder_only moves every encoder weight and keeps every
    decoder, initial-state and head weight bit for bit; without the option all of them move."""
    batch = {k: v for k, v in _batch(sheep(n=8)).items() if k != "eps"}  # z's noise reaches presig
    encoder = ("enc_fw/", "enc_bw/", "mu/", "presig/")
    for only in (True, False):
        model = build_model(tiny_hparams(encode_prefix_prob=0.5, train_encoder_only=only,
                                         learning_rate=0.01))
        weights = [w for w in model.weights if w.path != "kl_weight"]  # a schedule's, not learnt
        before = {w.path: ops.convert_to_numpy(w).copy() for w in weights}
        model.train_on_batch(batch)
        for w in weights:
            moved = not np.array_equal(before[w.path], ops.convert_to_numpy(w))
            assert moved == (w.path.startswith(encoder) or not only), w.path


def test_train_encoder_only_needs_a_vae():
    with pytest.raises(ValueError, match="train_encoder_only needs a VAE"):
        HParams(conditional=False, train_encoder_only=True)
