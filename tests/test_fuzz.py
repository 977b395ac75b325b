"""Property-based hardening: random and adversarial input to every stroke conversion, to
Quick, Draw! preprocessing and to the canvas reader.

The contract: whatever goes in, the only exception that comes out is one of the library's
documented error types (a SketchError subclass) with a non-empty, readable message; and what
does come out is well formed (stroke-3 arrays are finite with pens of 0 or 1).

Each test runs `EXAMPLES` hypothesis examples (settings below) plus its explicit @example
cases; the README lists what each bad input gives.
"""

from __future__ import annotations

import copy
import io
import math
import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sketch_model import datasets
from sketch_model import strokes as S
from sketch_model.canvas import canvas_to_stroke3
from sketch_model.errors import DataFileError, SketchError
from sketch_model.quickdraw import preprocess_raw_drawing

# Warnings count as failures too: numpy overflow warnings or a dropped imaginary part mean
# the input reached arithmetic it should have been refused before.
pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),
              pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- strategies ---------------------------------------------------------------------------

# Numbers a hostile or broken client sends: NaN, infinities, float extremes, subnormals,
# Python ints beyond any float, bools, numeric strings.
EXTREME_FLOATS = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, math.nan, math.inf, -math.inf,
                                  1e308, -1e308, 3.4e38, -3.4e38, 1e39, 5e-324, 1e-45,
                                  2.0**24 + 1, 1e15])
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.integers(-(10**6), 10**6),
    st.integers(min_value=10**300, max_value=10**400) | st.integers(max_value=-(10**300),
                                                                  min_value=-(10**400)),
    EXTREME_FLOATS,
)
SCALARS = NUMBERS | st.booleans() | st.none() | st.text(max_size=4) | st.just("1")
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)
PEN = st.sampled_from([0, 1, 0, 1, 0.5, 2, -1, math.nan, True])

ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.uint8,
                           np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    elements=None)


@st.composite
def stroke3_like(draw) -> object:
    """Mostly stroke-3-shaped rows, with adversarial numbers, pens and shapes mixed in."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(ARRAYS)
    if kind == 1:
        return draw(JSON)
    n = draw(st.integers(0, 12))
    width = 3 if kind != 2 else draw(st.integers(0, 6))
    rows = [[draw(NUMBERS) for _ in range(width - 1)] + [draw(PEN)] for _ in range(n)]
    if kind == 5 and rows:  # ragged
        rows[draw(st.integers(0, len(rows) - 1))].append(draw(NUMBERS))
    if kind == 4:  # a float array holding the extremes
        try:
            return np.array(rows, dtype=np.float64)
        except (OverflowError, ValueError, TypeError):
            return rows
    return rows


EPSILONS = st.one_of(st.floats(0, 50), EXTREME_FLOATS, st.integers(-5, 10**400),
                     st.sampled_from([-1.0, True, None, "2", np.float32(1.5), np.nan]))
MAX_LENS = st.one_of(st.integers(-3, 40),
                     st.sampled_from([0, -1, 2.5, "10", None, True, np.int64(7), math.inf]))


def polylines_like() -> st.SearchStrategy:
    point = st.lists(NUMBERS, min_size=0, max_size=3)
    line = st.one_of(st.lists(point, max_size=8), ARRAYS, JSON)
    return st.one_of(st.lists(line, max_size=4), JSON, ARRAYS)


# --- the contract -------------------------------------------------------------------------

def documented(fn, *args):
    """fn(*args), or None if it raised a SketchError with a readable message; any other
    exception fails the test."""
    try:
        return fn(*args)
    except SketchError as err:
        message = str(err)
        assert message.strip(), f"{type(err).__name__} with an empty message"
        assert message.isprintable(), f"unreadable message {message!r}"
        return None


def assert_stroke3(result: np.ndarray) -> None:
    assert isinstance(result, np.ndarray) and result.ndim == 2 and result.shape[1] == 3, result
    assert np.all(np.isfinite(result)), f"non-finite values in {result}"
    assert np.all((result[:, 2] == 0) | (result[:, 2] == 1)), f"pens other than 0/1: {result}"


# --- strokes.py ---------------------------------------------------------------------------

@FUZZ
@given(stroke3_like())
@example([[10**400, 0, 0]])
@example([[3e38, 0, 0], [3e38, 0, 1]])
@example(np.array([[1e39, 0, 0]]))
def test_as_stroke3(data: object) -> None:
    result = documented(S.as_stroke3, data)
    if result is not None:
        assert_stroke3(result)


@FUZZ
@given(stroke3_like(), MAX_LENS)
@example([[1, 2, 0]], 2.5)
@example([[1, 2, 0]], "10")
@example([[1, 2, 0]], None)
def test_stroke3_to_stroke5(data: object, max_len: object) -> None:
    result = documented(S.stroke3_to_stroke5, data, max_len)
    if result is not None:
        assert result.shape == (max_len, 5) and np.all(np.isfinite(result))
        assert np.all(result[:, 2:].sum(axis=1) == 1)


@st.composite
def stroke5_like(draw) -> object:
    if draw(st.booleans()):
        return draw(st.one_of(ARRAYS, JSON))
    n = draw(st.integers(0, 8))
    return [[draw(NUMBERS), draw(NUMBERS)] + [draw(PEN) for _ in range(3)] for _ in range(n)]


@FUZZ
@given(stroke5_like())
@example("abc")
@example([[1, 2, 3, 4, 5], [1]])
@example([[10**400, 0, 1, 0, 0]])
@example([[math.nan, 0, 1, 0, 0]])
@example([[1, 0, 0.5, 0.5, 0]])
def test_stroke5_to_stroke3(data: object) -> None:
    result = documented(S.stroke5_to_stroke3, data)
    if result is not None:
        assert_stroke3(result)


@FUZZ
@given(stroke3_like())
@example([[3e38, 0, 0], [3e38, 0, 1]])
def test_stroke3_to_polylines(data: object) -> None:
    result = documented(S.stroke3_to_polylines, data)
    if result is not None:
        assert isinstance(result, list)
        for line in result:
            assert line.ndim == 2 and line.shape[1] == 2 and len(line) > 0
            assert np.all(np.isfinite(line)), "polylines with non-finite points"


@FUZZ
@given(polylines_like())
@example(None)
@example(5)
@example([[[1e308, 0], [-1e308, 0]]])
@example([[[1e300, 0]]])
def test_polylines_to_stroke3(data: object) -> None:
    result = documented(S.polylines_to_stroke3, data)
    if result is not None:
        assert_stroke3(result)


@FUZZ
@given(st.one_of(st.lists(st.lists(NUMBERS, min_size=2, max_size=2), max_size=10), ARRAYS,
                 JSON), EPSILONS)
@example([[0, 0], [1, 1], [2, 0]], 10**400)
@example([[-1e308, 0], [0, 1e308], [1e308, 0]], 1.0)
def test_rdp(points: object, epsilon: object) -> None:
    result = documented(S.rdp, points, epsilon)
    if result is not None:
        assert result.ndim == 2 and result.shape[1] == 2 and np.all(np.isfinite(result))
        original = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(original):  # the ends are kept, and only points of the line come out
            np.testing.assert_array_equal(result[[0, -1]], original[[0, -1]])
            assert len(result) <= len(original)


@FUZZ
@given(stroke3_like(), EPSILONS)
@example([[1e38, 0, 0], [1e38, 0, 0], [1e38, 1e38, 1]], 1.0)
@example([[3e38, 0, 0], [3e38, 0, 1]], 1.0)
def test_simplify_stroke3(data: object, epsilon: object) -> None:
    result = documented(S.simplify_stroke3, data, epsilon)
    if result is not None:
        assert_stroke3(result)


@FUZZ
@given(stroke3_like(), MAX_LENS)
@example(np.tile([[1.0, 1.0, 0.0]], (5, 1)), 0)
@example(np.tile([[1.0, 1.0, 0.0]], (5, 1)), -1)
@example(np.tile([[1.0, 1.0, 0.0]], (5, 1)), "3")
@example(np.tile([[1.0, 1.0, 0.0]], (5, 1)), 2.5)
@example(np.array([[3e38, 0, 0]] * 5 + [[3e38, 1, 1]], np.float32), 2)
def test_fit_to_model(data: object, max_len: object) -> None:
    result = documented(S.fit_to_model, data, max_len)
    if result is not None:
        fitted, message = result
        assert_stroke3(fitted)
        assert len(fitted) <= max_len
        assert message is None or (isinstance(message, str) and message)


# --- quickdraw.py -------------------------------------------------------------------------

@st.composite
def raw_drawings(draw) -> object:
    """Raw Quick, Draw! drawings [[xs], [ys], [ts]] with adversarial values and shapes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(JSON)
    strokes = []
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(0, 6))
        rows = [[draw(NUMBERS) if draw(st.integers(0, 3)) else draw(SCALARS) for _ in range(n)]
                for _ in range(draw(st.sampled_from([3, 3, 2, 1, 4])))]
        if rows and draw(st.integers(0, 5)) == 0:
            rows[0] = rows[0][:-1]  # rows of different lengths
        strokes.append(rows)
    return strokes


@FUZZ
@given(raw_drawings())
@example([[[0, 10**400], [0, 1], [0, 1]]])
@example([[[-1e308, 1e308], [0, 0], [0, 1]]])
@example([[[0, 5e-324], [0, 0]]])
@example([[[0, 1e-300, 2e-300], [0, 0, 0]]])
@example([[[1, 1], [2, 2], [0, 1]]])  # one click: a dot
def test_preprocess_raw_drawing(drawing: object) -> None:
    result = documented(preprocess_raw_drawing, drawing)
    if result is not None:
        for xs, ys in result:
            assert len(xs) == len(ys) > 0
            assert all(isinstance(v, int) and 0 <= v <= 255 for v in xs + ys)


# --- canvas.py ----------------------------------------------------------------------------

TEMPLATES = [
    {"type": "path", "left": 10, "top": 10, "strokeWidth": 3,
     "path": [["M", 10, 10], ["Q", 10, 10, 15, 15], ["Q", 20, 20, 25, 22], ["L", 30, 30]]},
    {"type": "path", "originX": "center", "originY": "center", "left": 149, "top": 99,
     "path": [["M", 49, 29], ["L", 249, 29], ["C", 200, 100, 100, 150, 49, 169], ["z"]],
     "pathOffset": {"x": 149, "y": 99}},
    {"type": "line", "x1": -5, "x2": 5, "y1": -7, "y2": 7, "angle": 30, "skewX": 10},
    {"type": "rect", "left": 29, "top": 29, "width": 70, "height": 60, "strokeUniform": True},
    {"type": "circle", "left": 50, "top": 50, "radius": 20, "startAngle": 0, "endAngle": 360},
    {"type": "ellipse", "rx": 5, "ry": 8, "flipY": True},
    {"type": "triangle", "width": 10, "height": 10, "skewY": 5},
    {"type": "polygon", "points": [{"x": 1, "y": 2}, {"x": 5, "y": 9}, {"x": 0, "y": 4}]},
    {"type": "polyline", "points": [{"x": 1, "y": 2}, {"x": 5, "y": 9}]},
    {"type": "i-text", "text": "hello", "left": 3, "top": 4},
    {"type": "image", "src": "data:,", "left": 3, "top": 4},
    {"type": "group", "objects": []},
]
FIELDS = sorted({key for t in TEMPLATES for key in t} | {"scaleX", "scaleY", "angle", "skewX",
                                                          "skewY", "originX", "originY",
                                                          "strokeWidth", "flipX"})
CANVAS_VALUES = st.one_of(JSON, NUMBERS, st.sampled_from([1e308, -1e308, 1e200, 89.9999999, 90,
                                                          -90, 1e-300]))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(TEMPLATES),
                          st.lists(st.tuples(st.sampled_from(FIELDS), CANVAS_VALUES), max_size=3)),
                max_size=3),
       st.integers(0, 20), st.integers(0, 6), CANVAS_VALUES, EPSILONS, JSON)
@example([], 0, 0, 0, 2.0, None)
@example([(TEMPLATES[0], [("left", 1e308), ("scaleX", 1e308)])], 0, 0, 0, 2.0, None)
@example([(TEMPLATES[3], [("width", 1e308), ("angle", 45)])], 0, 0, 0, 2.0, None)
def test_canvas_to_stroke3(objects: list, command: int, slot: int, junk: object, epsilon: object,
                           raw: object) -> None:
    placed = []
    for template, changes in objects:
        obj = copy.deepcopy(template)
        for key, value in changes:
            obj[key] = value
        if "path" in obj and isinstance(obj["path"], list) and obj["path"]:
            entry = obj["path"][command % len(obj["path"])]
            if isinstance(entry, list):
                if slot < len(entry):
                    entry[slot] = junk
                else:
                    entry.append(junk)
        placed.append(obj)
    for data in ({"version": "4.4.0", "objects": placed}, raw, {"objects": raw},
                 {"objects": [raw]}):
        result = documented(canvas_to_stroke3, data, epsilon)
        if result is not None:
            strokes, skipped = result
            assert_stroke3(strokes)
            assert isinstance(skipped, int) and skipped >= 0


# --- datasets.py: the .npz pickle reader ---------------------------------------------------

def _object_array(items: list) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


_SKETCHES = _object_array([np.array([[1, 2, 0], [3, 4, 1]], np.int16), np.array([[5.0, 6.0, 1.0]]),
                           np.zeros((2, 3), ">i4")])
PICKLES = [pickle.dumps(_SKETCHES, protocol=p) for p in (0, 2, 3, 4, 5)]


@FUZZ
@given(st.sampled_from(PICKLES),
       st.lists(st.tuples(st.sampled_from(["set", "delete", "insert", "copy"]),
                          st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8)),
                min_size=1, max_size=6),
       st.sampled_from([(3,), (1,), (300,), (3, 1)]))
def test_read_npz_pickles_mutated(payload: bytes, edits: list, shape: tuple) -> None:
    """Mutated object-array pickles (the part of a sketch-rnn .npz where code could hide):
    DataFileError or well-formed sketches, never another exception or a crash."""
    body = bytearray(payload)
    for op, where, data in edits:
        at = int(where * len(body))
        if op == "set":
            body[at:at + len(data)] = data
        elif op == "delete":
            del body[at:at + len(data)]
        elif op == "insert":
            body[at:at] = data
        else:
            body[at:at] = body[len(data) * 7 % len(body):][:len(data) * 4]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False,
                                                  "shape": shape})
    try:
        sketches = datasets._parse_npy(header.getvalue() + bytes(body), "fuzz.npz:train", "train")
    except DataFileError as err:
        assert str(err).strip()
        return
    for sketch in sketches:
        assert_stroke3(sketch)
