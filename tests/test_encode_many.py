"""Sketcher.encode_many encodes drawings of different lengths in padded batches; each drawing
must get the mu that the Keras encoder gives it alone, at its exact length."""

import numpy as np
import pytest
from keras import ops

from sketch_model import load_model
from sketch_model.datasets import normalize, pad_batch, read_npz
from sketch_model.model import SketchRNN
from sketch_model.sample import Sketcher
from tests.helpers import ROOT, SHEEP, sheep, tiny_hparams


def keras_mu_one_at_a_time(model: SketchRNN, sketches: list[np.ndarray]) -> np.ndarray:
    """mu of each drawing (model units) from the Keras encoder, run alone over its own length."""
    mus = []
    for s in sketches:
        strokes, lengths = pad_batch([s], len(s))
        mus.append(ops.convert_to_numpy(model.encode(strokes[:, 1:], lengths)[0])[0])
    return np.stack(mus)


def test_bundled_vae_encodes_a_batch_as_each_drawing_alone():
    sketcher = load_model(ROOT / "assets" / "models" / "sheep_vae")
    drawings = read_npz(SHEEP)["test"][:20]
    assert len({len(d) for d in drawings}) > 15  # 41 to 154 points
    want = keras_mu_one_at_a_time(sketcher.model, normalize(drawings, sketcher.scale_factor))
    for chunk in (128, 7, 1):  # one batch, batches of mixed sizes, one drawing at a time
        np.testing.assert_allclose(sketcher.encode_many(drawings, chunk=chunk), want, atol=1e-5)
    np.testing.assert_allclose(sketcher.encode_many(drawings[::-1], chunk=7), want[::-1], atol=1e-5)
    np.testing.assert_allclose(sketcher.encode(drawings[3]), want[3], atol=1e-5)
    assert sketcher.encode_many([]).shape == (0, sketcher.hps.z_size)


@pytest.mark.parametrize("cell", ["lstm", "layer_norm"])  # every enc_model HParams accepts
def test_every_encoder_cell_encodes_a_batch_as_each_drawing_alone(cell):
    hps = tiny_hparams(enc_model=cell, seed=5)
    model = SketchRNN(hps)
    # mu's initial weights (std 0.001) would make every mu nearly 0; make the comparison bite
    kernel = np.random.default_rng(0).normal(size=(2 * hps.enc_rnn_size, hps.z_size)) * 0.3
    model.to_mu.kernel.assign(kernel.astype(np.float32))
    sketches = sheep(split="test", n=12)
    want = keras_mu_one_at_a_time(model, sketches)
    got = Sketcher(model, scale_factor=1.0).encode_many(sketches, chunk=5)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5)
