"""The quality figures' building blocks against hand-worked drawings and naive loops."""

import numpy as np
import pytest

from sketch_model.datasets import START_TOKEN
from sketch_model.evaluate import (STALL_TAIL, chamfer_distance, is_stalled, normalised_points,
                                   pen_at_events, retrieval_ranks, stroke_count)
from sketch_model.model import SketchRNN
from sketch_model.sample import Sketcher
from sketch_model.strokes import stroke3_to_stroke5
from tests.helpers import sheep, tiny_hparams

SQUARE = np.array([[10, 0, 0], [0, 10, 0], [-10, 0, 0], [0, -10, 1]], np.float32)


def test_normalised_points_centre_the_box_and_scale_its_longer_side_to_one():
    points = normalised_points(SQUARE * np.array([3, 3, 1], np.float32))
    np.testing.assert_allclose(points, [[0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])


def test_chamfer_distance_against_a_naive_loop():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 2)), rng.normal(size=(11, 2))
    nearest = lambda p, q: np.mean([min(np.hypot(*(x - y)) for y in q) for x in p])
    assert np.isclose(chamfer_distance(a, b), (nearest(a, b) + nearest(b, a)) / 2)
    assert chamfer_distance(a, a) == 0 and np.isclose(chamfer_distance(a, b), chamfer_distance(b, a))


def test_stroke_count_counts_pen_lifts_and_an_open_last_stroke():
    assert stroke_count(SQUARE) == 1
    assert stroke_count(np.vstack([SQUARE, [[5, 5, 0], [1, 1, 0]]])) == 2
    assert stroke_count(np.zeros((0, 3))) == 0


def test_a_drawing_is_stalled_only_if_it_runs_to_the_limit_while_crawling():
    moving = np.tile([[9.0, 0.0, 0.0]], (250, 1))
    crawling = moving.copy()
    crawling[-STALL_TAIL:, 0:2] = [0.3, -0.4]  # moves of length 0.5 < 9 / 8
    assert is_stalled(crawling, 250, typical_move=9.0)
    assert not is_stalled(moving, 250, typical_move=9.0)
    assert not is_stalled(crawling[:-1], 250, typical_move=9.0)  # it ended before the limit
    crawling[-STALL_TAIL // 2 - 1:, 0:2] = [9.0, 0.0]  # most of the tail moves again
    assert not is_stalled(crawling, 250, typical_move=9.0)


def test_retrieval_ranks_count_the_inputs_nearer_than_the_own_one():
    small, big = SQUARE.copy(), SQUARE * np.array([2, 1, 1], np.float32)  # a square, a 2:1 box
    line = np.array([[10, 0, 0], [10, 0, 1]], np.float32)
    inputs = [small, big, line]
    np.testing.assert_array_equal(retrieval_ranks(inputs, inputs), [0, 0, 0])
    # the square drawn where the box should be: its own input (the box) is second nearest
    ranks = retrieval_ranks([small, small, line], inputs)
    np.testing.assert_array_equal(ranks, [0, 1, 0])
    assert retrieval_ranks([small, np.zeros((0, 3)), line], inputs)[1] == 2  # empty: worst


@pytest.mark.parametrize("conditional", [True, False])
def test_pen_at_events_against_a_per_sketch_numpy_loop(conditional):
    """Batched and padded in Keras, the figures equal one unpadded numpy pass per sketch."""
    hps = tiny_hparams(conditional=conditional, seed=5, batch_size=3)
    model = SketchRNN(hps)
    sketcher = Sketcher(model, scale_factor=1.0)
    sketches = sheep(n=7)
    lift_p, lift_top, end_p, end_top = [], [], [], []
    for s in sketches:
        x = np.concatenate([START_TOKEN[None], stroke3_to_stroke5(s, len(s) + 1)])[None]
        z = sketcher.encode_many([s]) if conditional else None
        _, h = sketcher.decoder.run(sketcher._inputs(x[:, :-1], z)[0], sketcher._initial(z, 1))
        logits = (h @ sketcher.head[0] + sketcher.head[1])[0, :, :3]
        p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        for i in np.flatnonzero(s[:, 2] == 1):
            lift_p.append(p[i, 1])
            lift_top.append(p[i].argmax() == 1)
        end_p.append(p[len(s), 2])
        end_top.append(p[len(s)].argmax() == 2)
    report = pen_at_events(model, sketches, hps)
    assert np.isclose(report["lift_probability_median"], np.median(lift_p), atol=1e-5)
    assert report["lift_likeliest_rate"] == np.mean(lift_top)
    assert np.isclose(report["end_probability_median"], np.median(end_p), atol=1e-5)
    assert report["end_likeliest_rate"] == np.mean(end_top)
