"""Quick, Draw! preprocessing against Google's own simplified files, and the ndjson writer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sketch_model.errors import DataFileError, DrawingError
from sketch_model.quickdraw import (
    SIMPLIFIED_FIELDS,
    drawing_to_stroke3,
    preprocess_raw_drawing,
    resample,
    simplify_ndjson,
)
from sketch_model.strokes import stroke3_to_polylines

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "quickdraw_mini"
RAW = DATA / "raw"
SIMPLIFIED = DATA / "simplified"
# Measured: every one of the 344 raw drawings that has a simplified twin comes out point for
# point as Google's (the margin leaves room for a handful of tie-breaks on other machines).
MIN_EXACT_SHARE = 0.99

needs_data = pytest.mark.skipif(not RAW.is_dir(), reason="the Quick, Draw! sample data is absent")


def simplified_twin(raw_file: Path) -> Path:
    """Google's simplified file for a raw file: the class name has spaces, not underscores."""
    return SIMPLIFIED / (raw_file.stem.replace("_", " ") + ".ndjson")


def google_lines(raw_file: Path) -> dict[str, str]:
    """Google's simplified ndjson lines of a class, by key_id."""
    lines = simplified_twin(raw_file).read_text().splitlines()
    return {json.loads(line)["key_id"]: line for line in lines}


def drawing_distance(ours: list, google: list) -> float:
    """Symmetric Hausdorff distance in pixels between the points of two simplified drawings."""
    a = np.array([p for x, y in ours for p in zip(x, y)], dtype=float)
    b = np.array([p for x, y in google for p in zip(x, y)], dtype=float)
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return float(max(d.min(axis=0).max(), d.min(axis=1).max()))


def measure_agreement() -> tuple[int, int, list[float]]:
    """(drawings matching Google's exactly, drawings compared, distances of the others)."""
    exact, total, distances = 0, 0, []
    for raw_file in sorted(RAW.glob("*.ndjson")):
        google = {key: json.loads(line)["drawing"] for key, line in google_lines(raw_file).items()}
        for line in raw_file.read_text().splitlines():
            record = json.loads(line)
            if record["key_id"] not in google:
                continue
            total += 1
            ours = preprocess_raw_drawing(record["drawing"])
            if ours == google[record["key_id"]]:
                exact += 1
            else:
                distances.append(drawing_distance(ours, google[record["key_id"]]))
    return exact, total, distances


@needs_data
def test_preprocessing_reproduces_googles_simplified_drawings() -> None:
    exact, total, distances = measure_agreement()
    share = exact / total
    others = (f"mean {np.mean(distances):.2f} px, max {max(distances):.2f} px"
              if distances else "none")
    print(f"\nGoogle agreement over {len(list(RAW.glob('*.ndjson')))} classes: {exact}/{total} "
          f"drawings point for point ({share:.1%}); distance of the others: {others}")
    assert total >= 300
    assert share >= MIN_EXACT_SHARE
    assert all(d <= 3.0 for d in distances)


@needs_data
def test_simplify_ndjson_writes_googles_lines_and_skips_malformed_ones(tmp_path: Path) -> None:
    raw_file = RAW / "cat.ndjson"
    raw_lines = raw_file.read_text().splitlines()
    record = json.loads(raw_lines[0])
    malformed = [
        "not json at all",
        "[1, 2, 3]",
        json.dumps({"word": "cat", "drawing": record["drawing"]}),  # fields missing
        json.dumps(record | {"drawing": []}),
        json.dumps(record | {"drawing": [[["12"], [3], [0]]]}),
        json.dumps(record | {"drawing": [[[1, 2], [3], [0, 1]]]}),
        json.dumps(record | {"drawing": [[[1, math.nan], [3, 4], [0, 1]]]}),
        json.dumps(record | {"word": math.inf}),
        '{"drawing": ' * 5000,
    ]
    src, dst = tmp_path / "raw.ndjson", tmp_path / "out" / "simplified.ndjson"
    dst.parent.mkdir()
    text = "\n".join(raw_lines[:5] + malformed + ["", "   "] + raw_lines[5:]) + "\n"
    src.write_bytes(text.encode() + b"\xff\xfe not utf-8\n")
    counts = simplify_ndjson(src, dst)
    assert counts == {"read": len(raw_lines) + len(malformed) + 1, "written": len(raw_lines),
                      "skipped": len(malformed) + 1}
    google = google_lines(raw_file)
    written = dst.read_text().splitlines()
    assert len(written) == len(raw_lines)
    for line in written:
        assert list(json.loads(line)) == list(SIMPLIFIED_FIELDS)
        assert line == google[json.loads(line)["key_id"]]  # byte for byte
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]


def test_simplify_ndjson_reports_unreadable_and_unwritable_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="missing.ndjson"):
        simplify_ndjson(tmp_path / "missing.ndjson", tmp_path / "out.ndjson")
    src = tmp_path / "raw.ndjson"
    src.write_text("")
    with pytest.raises(DataFileError):
        simplify_ndjson(src, tmp_path / "no such folder" / "out.ndjson")
    assert not (tmp_path / "out.ndjson").exists()


def test_preprocess_aligns_scales_and_rounds() -> None:
    # A 2:1 box from (10, 20): the long side becomes 255, the short one 127.5 -> 128 (even).
    drawing = [[[10, 110, 110], [20, 20, 70], [0, 1, 2]]]
    assert preprocess_raw_drawing(drawing) == [[[0, 255, 255], [0, 0, 128]]]


def test_a_single_dot_becomes_two_equal_points_as_in_googles_files() -> None:
    drawing = [[[5, 25], [5, 45], [0, 9]], [[15], [25], [30]], [[20, 20], [30, 30], [40, 41]]]
    result = preprocess_raw_drawing(drawing)
    assert result[0] == [[0, 128], [0, 255]]
    assert result[1] == [[64, 64], [128, 128]]
    assert result[2] == [[96, 96], [159, 159]]


def test_resample_spaces_points_one_unit_apart_along_the_stroke() -> None:
    line = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [3.0, 6.5]])
    samples = resample(line)
    assert len(samples) == 9  # at lengths 0..7, then the end (7.5)
    steps = np.linalg.norm(np.diff(samples[:-1], axis=0), axis=1)
    np.testing.assert_allclose(steps, 1.0, atol=1e-12)
    np.testing.assert_array_equal(samples[[0, -1]], line[[0, -1]])
    np.testing.assert_array_equal(resample(np.array([[2.0, 3.0]])), [[2, 3], [2, 3]])


@pytest.mark.parametrize("drawing", [
    [],
    "strokes",
    [[[1, 2], [3, 4], [0, 1]], "stroke"],
    [[[1, 2], [3, 4], [0, 1], [9, 9]]],
    [[[], [], []]],
    [[[1, 2], [3], [0, 1]]],
    [[[1, True], [3, 4], [0, 1]]],
    [[[1, "2"], [3, 4], [0, 1]]],
    [[[1, None], [3, 4], [0, 1]]],
    [[[1, math.inf], [3, 4], [0, 1]]],
    [[[1, 10**400], [3, 4], [0, 1]]],
    [[[-1e308, 1e308], [3, 4], [0, 1]]],
])
def test_preprocess_rejects_malformed_drawings(drawing: object) -> None:
    with pytest.raises(DrawingError):
        preprocess_raw_drawing(drawing)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4), max_leaves=30)
raw_strokes = hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.just(2)),
                        elements=st.floats(-1e6, 1e6)).map(
    lambda points: [*points.T.tolist(), list(range(len(points)))])


@given(json_values)
def test_preprocess_raises_nothing_but_drawing_error(drawing: object) -> None:
    try:
        preprocess_raw_drawing(drawing)
    except DrawingError:
        pass


@given(st.lists(raw_strokes, min_size=1, max_size=5))
def test_preprocess_gives_integer_strokes_in_the_255_box(drawing: list) -> None:
    result = preprocess_raw_drawing(drawing)
    assert len(result) == len(drawing)
    values = [v for stroke in result for row in stroke for v in row]
    assert all(type(v) is int and 0 <= v <= 255 for v in values)
    assert all(len(x) == len(y) >= 2 for x, y in result)


def test_drawing_to_stroke3_keeps_the_simplified_points() -> None:
    drawing = [[[10, 20, 30], [5, 5, 40]], [[0, 0], [100, 90]]]
    strokes = drawing_to_stroke3(drawing)
    np.testing.assert_array_equal(strokes, [[10, 5, 0], [10, 0, 0], [10, 35, 1],
                                            [-30, 60, 0], [0, -10, 1]])
    lines = stroke3_to_polylines(strokes)
    assert [line.T.tolist() for line in lines] == drawing
    with pytest.raises(DrawingError):
        drawing_to_stroke3([[[1, 2], [3, 4], [0, 1]]])  # raw strokes are not simplified ones
