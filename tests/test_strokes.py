"""Stroke formats round trips, and RDP: known cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sketch_model.errors import DrawingError, SketchError
from sketch_model.strokes import (
    polylines_to_stroke3,
    rdp,
    simplify_stroke3,
    stroke3_to_polylines,
    stroke3_to_stroke5,
    stroke5_to_stroke3,
)


@st.composite
def stroke3s(draw: st.DrawFn, max_points: int = 60) -> np.ndarray:
    """Integer-offset stroke-3 drawings whose last point lifts the pen."""
    n = draw(st.integers(1, max_points))
    offsets = draw(hnp.arrays(np.int64, (n, 2), elements=st.integers(-300, 300)))
    pens = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    pens[-1] = 1
    return np.column_stack([offsets, pens]).astype(np.float32)


coordinates = st.floats(-1000, 1000, allow_nan=False, width=32)
polylines = st.lists(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(2)), elements=coordinates),
    min_size=1, max_size=6)
zigzags = hnp.arrays(np.float64, st.tuples(st.integers(0, 80), st.just(2)),
                     elements=st.floats(-100, 100, allow_nan=False))


def chord_distance(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Distance of `point` from the line through start and end (from start if they are equal)."""
    direction = end - start
    length = math.hypot(*direction)
    if length == 0:
        return math.hypot(*(point - start))
    return abs(direction[0] * (point[1] - start[1]) - direction[1] * (point[0] - start[0])) / length


@given(stroke3s(), st.integers(0, 20))
def test_stroke3_stroke5_round_trip_is_exact(strokes: np.ndarray, padding: int) -> None:
    s5 = stroke3_to_stroke5(strokes, len(strokes) + padding)
    assert s5.shape == (len(strokes) + padding, 5)
    assert np.all(s5[len(strokes):] == [0, 0, 0, 0, 1])
    assert np.all(s5[:len(strokes), 2:].sum(axis=1) == 1)
    np.testing.assert_array_equal(stroke5_to_stroke3(s5), strokes)


@given(stroke3s())
def test_stroke3_polylines_round_trip(strokes: np.ndarray) -> None:
    lines = stroke3_to_polylines(strokes)
    assert len(lines) == int(strokes[:, 2].sum())
    assert sum(len(line) for line in lines) == len(strokes)
    # Integer offsets stay exact in float32 while the running sums stay below 2**24.
    np.testing.assert_array_equal(polylines_to_stroke3(lines), strokes)


@given(polylines)
def test_polylines_stroke3_round_trip_within_float32(lines: list[np.ndarray]) -> None:
    back = stroke3_to_polylines(polylines_to_stroke3(lines))
    assert [len(line) for line in back] == [len(line) for line in lines]
    for got, want in zip(back, lines):
        # float32 offsets and a float32 running sum: a few ulps of 2000 per point.
        np.testing.assert_allclose(got, want, atol=1e-3 * len(back) * 20)


def test_trailing_open_stroke_is_kept_and_closed_by_the_round_trip() -> None:
    strokes = np.array([[1, 1, 0], [2, 0, 1], [0, 3, 0], [0, 3, 0]], dtype=np.float32)
    lines = stroke3_to_polylines(strokes)
    assert [len(line) for line in lines] == [2, 2]
    np.testing.assert_array_equal(polylines_to_stroke3(lines)[:, 2], [0, 1, 0, 1])


def test_polylines_to_stroke3_rejects_points_that_are_not_pairs() -> None:
    # (4, 3) used to be reshaped silently into six made-up points.
    with pytest.raises(DrawingError, match=r"\(k, 2\)"):
        polylines_to_stroke3([np.zeros((4, 3))])
    with pytest.raises(DrawingError):
        polylines_to_stroke3([[[0, 0], [1]]])
    with pytest.raises(DrawingError):
        polylines_to_stroke3([[[0, 0], [math.nan, 1]]])


def test_rdp_collapses_a_straight_line_to_its_ends() -> None:
    line = np.column_stack([np.arange(50.0), 3 * np.arange(50.0) + 1])
    np.testing.assert_array_equal(rdp(line, 0.5), line[[0, -1]])


def test_rdp_keeps_the_corners_of_a_zigzag() -> None:
    corners = np.array([[0, 0], [10, 10], [20, 0], [30, 10], [40, 0]], dtype=float)
    dense = np.vstack([np.linspace(a, b, 11)[:-1] for a, b in zip(corners[:-1], corners[1:])]
                      + [corners[-1:]])
    np.testing.assert_allclose(rdp(dense, 1.0), corners)
    # A bump lower than epsilon goes; a higher one stays.
    bump = np.array([[0, 0], [5, 1.5], [10, 0]], dtype=float)
    np.testing.assert_array_equal(rdp(bump, 2.0), bump[[0, 2]])
    np.testing.assert_array_equal(rdp(bump, 1.0), bump)


def test_rdp_with_epsilon_zero_keeps_every_non_collinear_point() -> None:
    points = np.array([[0, 0], [1, 0], [2, 0], [3, 1], [4, 2], [4, 5], [2, 5], [0, 5]], float)
    np.testing.assert_array_equal(rdp(points, 0.0), points[[0, 2, 4, 5, 7]])


def test_rdp_measures_distance_to_the_chord_line_not_the_segment() -> None:
    # Google's RDP (reproduced here) drops a spike that doubles back along the chord's line.
    spike = np.array([[0, 0], [10, 0], [-5, 0], [5, 0]], dtype=float)
    np.testing.assert_array_equal(rdp(spike, 1.0), spike[[0, 3]])


def test_rdp_keeps_the_first_of_equally_far_points() -> None:
    plateau = np.array([[0, 0], [1, 3], [2, 3], [3, 3], [4, 0]], dtype=float)
    # Keeping (3, 3) instead would have kept [0, 3, 4].
    np.testing.assert_array_equal(rdp(plateau, 2.0), plateau[[0, 1, 4]])


def test_rdp_is_iterative_on_a_very_long_stroke() -> None:
    t = np.linspace(0, 400 * math.pi, 200_000)
    spiral = np.column_stack([t * np.cos(t), t * np.sin(t)])
    simplified = rdp(spiral, 0.5)
    assert 2 < len(simplified) < len(spiral)


def test_rdp_handles_tiny_and_closed_strokes() -> None:
    assert rdp(np.zeros((0, 2)), 1.0).shape == (0, 2)
    np.testing.assert_array_equal(rdp([[3, 4]], 1.0), [[3, 4]])
    np.testing.assert_array_equal(rdp([[3, 4], [3, 4]], 1.0), [[3, 4], [3, 4]])
    np.testing.assert_array_equal(rdp(np.ones((5, 2)), 0.0), np.ones((2, 2)))
    loop = np.array([[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], dtype=float)
    np.testing.assert_array_equal(rdp(loop, 1.0), loop)


def test_rdp_rejects_bad_input() -> None:
    with pytest.raises(DrawingError):
        rdp([[0, 0], [math.inf, 1]], 1.0)
    with pytest.raises(DrawingError):
        rdp(np.zeros((3, 3)), 1.0)
    for epsilon in (-1.0, math.nan, math.inf, "2", None, True):
        with pytest.raises(SketchError):
            rdp([[0, 0], [1, 1], [2, 0]], epsilon)


@given(zigzags, st.floats(0, 20))
def test_rdp_keeps_a_subsequence_within_epsilon(points: np.ndarray, epsilon: float) -> None:
    _, first = np.unique(points, axis=0, return_index=True)
    points = points[np.sort(first)]  # distinct points, so each kept one has a single index
    simplified = rdp(points, epsilon)
    index = {tuple(point): i for i, point in enumerate(points)}
    kept = [index[tuple(point)] for point in simplified]
    assert kept == sorted(kept)
    if len(points):
        assert kept[0] == 0 and kept[-1] == len(points) - 1
    for a, b in zip(kept[:-1], kept[1:]):
        for dropped in points[a + 1:b]:
            assert chord_distance(dropped, points[a], points[b]) <= epsilon + 1e-9


@given(stroke3s(max_points=40), st.floats(0, 10))
def test_simplify_stroke3_keeps_the_strokes_and_their_ends(strokes: np.ndarray,
                                                           epsilon: float) -> None:
    simplified = simplify_stroke3(strokes, epsilon)
    before, after = stroke3_to_polylines(strokes), stroke3_to_polylines(simplified)
    assert len(after) == len(before)
    for got, want in zip(after, before):
        assert len(got) <= len(want)
        np.testing.assert_array_equal(got[[0, -1]], want[[0, -1]])


def test_simplify_stroke3_straightens_strokes() -> None:
    lines = [np.column_stack([np.arange(10.0), np.zeros(10)]),
             np.column_stack([np.full(5, 20.0), np.arange(5.0)])]
    simplified = simplify_stroke3(polylines_to_stroke3(lines), 0.1)
    np.testing.assert_array_equal(simplified, [[0, 0, 0], [9, 0, 1], [11, 0, 0], [0, 4, 1]])


@settings(max_examples=30)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=5))
def test_simplify_stroke3_of_integer_data_is_exact(lengths: list[int]) -> None:
    rng = np.random.default_rng(sum(lengths))
    lines = [rng.integers(-50, 50, size=(k + 1, 2)).astype(float) for k in lengths]
    simplified = stroke3_to_polylines(simplify_stroke3(polylines_to_stroke3(lines), 0.0))
    for got, want in zip(simplified, lines):
        np.testing.assert_array_equal(got, rdp(want, 0.0))
