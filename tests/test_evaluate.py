"""The quality figures' building blocks against hand-worked drawings and naive loops."""

import numpy as np

from sketch_model.evaluate import (STALL_TAIL, chamfer_distance, is_stalled, normalised_points,
                                   retrieval_ranks, stroke_count)

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
