"""Tests for sketch_model.render: SVG, PNG, Plotly, grids, replay bounds and drawing files."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from sketch_model.errors import DrawingError
from sketch_model.render import (
    drawing_bounds,
    grid_png,
    grid_svg,
    load_drawings_json,
    save_drawings,
    to_plotly,
    to_png,
    to_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
UNIT_SQUARE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 1]], dtype=np.float32)
# Two strokes of three points each: a horizontal line, then a vertical one.
TWO_STROKES = np.array(
    [[0, 0, 0], [5, 0, 0], [5, 0, 1], [0, 5, 0], [0, 5, 0], [0, 5, 1]], dtype=np.float32
)


def polylines(svg: str) -> list[tuple[list[tuple[float, float]], str]]:
    """(points, stroke colour) of every polyline in an SVG document."""
    root = ET.fromstring(svg)
    found = []
    for line in root.iter(f"{SVG}polyline"):
        points = [tuple(float(v) for v in pair.split(",")) for pair in line.get("points").split()]
        found.append((points, line.get("stroke")))
    return found


def png_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def darkness(image: Image.Image, x: int, y: int) -> int:
    return 255 - image.convert("L").getpixel((x, y))


def test_svg_parses_with_one_polyline_per_stroke_in_the_colour() -> None:
    svg = to_svg(TWO_STROKES, color="#123456")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == ("256", "256")
    lines = polylines(svg)
    assert [c for _, c in lines] == ["#123456", "#123456"]
    assert [len(p) for p, _ in lines] == [3, 3]
    group = root.find(f"{SVG}g")
    assert group.get("stroke-linecap") == "round" and group.get("stroke-linejoin") == "round"


def test_unit_square_lands_at_expected_svg_coordinates() -> None:
    (points, _), = polylines(to_svg(UNIT_SQUARE, size=100, margin=0.1))
    assert points == [(10, 10), (90, 10), (90, 90), (10, 90), (10, 10)]


def test_wide_drawing_keeps_aspect_ratio_and_is_centred() -> None:
    rectangle = [[0, 0, 0], [2, 0, 0], [0, 1, 0], [-2, 0, 0], [0, -1, 1]]
    (points, _), = polylines(to_svg(rectangle, size=100, margin=0.0))
    assert points == [(0, 25), (100, 25), (100, 75), (0, 75), (0, 25)]


def test_unit_square_png_has_dark_edges_and_white_centre() -> None:
    image = png_image(to_png(UNIT_SQUARE, size=100, margin=0.1, color="black"))
    assert image.size == (100, 100)
    # The edges lie on the lines x, y = 10 and 90; a 2-pixel stroke covers pixels 9 and 10.
    for t in (20, 50, 80):
        for x, y in [(t, 10), (t, 89), (10, t), (89, t)]:
            assert darkness(image, x, y) > 200, (x, y)
    for x, y in [(50, 50), (30, 70), (50, 5), (95, 50), (50, 14)]:
        assert darkness(image, x, y) == 0, (x, y)


def test_png_is_antialiased() -> None:
    diagonal = [[0, 0, 0], [10, 7, 1]]
    histogram = png_image(to_png(diagonal, size=64, color="black")).convert("L").histogram()
    assert any(histogram[1:255])  # grey levels between black and white


def test_png_highlight_colour() -> None:
    image = png_image(to_png(UNIT_SQUARE, size=100, margin=0.1, highlight_rows=2, highlight_color="#ff0000"))
    assert image.getpixel((50, 10)) == (255, 0, 0)  # top edge: the user's part
    assert image.getpixel((50, 89)) == (34, 34, 34)  # bottom edge: the default "#222"


@pytest.mark.parametrize(
    ("highlight_rows", "lit", "plain"),
    [(0, 0, 2), (1, 1, 2), (2, 1, 2), (3, 1, 1), (4, 2, 1), (5, 2, 1), (6, 2, 0), (100, 2, 0)],
)
def test_highlight_splits_strokes(highlight_rows: int, lit: int, plain: int) -> None:
    colours = [c for _, c in polylines(to_svg(TWO_STROKES, highlight_rows=highlight_rows))]
    assert colours.count("#d62728") == lit
    assert colours.count("#222") == plain


def test_split_stroke_parts_share_the_boundary_point() -> None:
    lines = polylines(to_svg(TWO_STROKES, highlight_rows=5, highlight_color="red", color="blue"))
    assert [(len(p), c) for p, c in lines] == [(3, "red"), (2, "red"), (2, "blue")]
    assert lines[1][0][-1] == lines[2][0][0]


def test_empty_drawing_gives_blank_svg_and_png() -> None:
    for empty in ([], np.zeros((0, 3))):
        assert polylines(to_svg(empty)) == []
        assert png_image(to_png(empty, size=32)).convert("L").getextrema() == (255, 255)
        assert to_plotly(empty).data == ()


def test_drawing_bounds() -> None:
    assert drawing_bounds(TWO_STROKES) == (0.0, 0.0, 10.0, 15.0)
    assert drawing_bounds([[3, -2, 1]]) == (3.0, -2.0, 3.0, -2.0)
    assert drawing_bounds([]) == (0.0, 0.0, 0.0, 0.0)


def test_replay_with_fixed_bounds_keeps_every_point_in_place() -> None:
    bounds = drawing_bounds(TWO_STROKES)
    full = {pt for points, _ in polylines(to_svg(TWO_STROKES, bounds=bounds)) for pt in points}
    for k in range(len(TWO_STROKES) + 1):
        frame = TWO_STROKES[:k]
        for points, _ in polylines(to_svg(frame, bounds=bounds, highlight_rows=3)):
            assert set(points) <= full
        png_image(to_png(frame, size=32, bounds=bounds))
        figure = to_plotly(frame, bounds=bounds)
        assert tuple(figure.layout.xaxis.range) == tuple(to_plotly(TWO_STROKES).layout.xaxis.range)


def test_single_point_is_centred() -> None:
    (points, _), = polylines(to_svg([[7, 9, 1]], size=50))
    assert points == [(25, 25), (25, 25)]


def test_plotly_figure() -> None:
    figure = to_plotly(TWO_STROKES, highlight_rows=3, color="blue", highlight_color="red")
    assert sorted(trace.line.color for trace in figure.data) == ["blue", "red"]
    assert all(trace.mode == "lines" and trace.hoverinfo == "skip" for trace in figure.data)
    red = next(trace for trace in figure.data if trace.line.color == "red")
    assert list(red.x) == [0, 5, 10, None] and list(red.y) == [0, 0, 0, None]
    yaxis, xaxis = figure.layout.yaxis, figure.layout.xaxis
    assert yaxis.range[0] > yaxis.range[1]  # reversed: y grows downwards
    assert yaxis.scaleanchor == "x"
    assert xaxis.visible is False and yaxis.visible is False
    assert figure.layout.hovermode is False
    assert xaxis.range[1] - xaxis.range[0] == pytest.approx(yaxis.range[0] - yaxis.range[1])


@pytest.mark.parametrize(
    ("count", "columns", "width", "rows"), [(5, 2, 2, 3), (3, 5, 3, 1), (4, 4, 4, 1), (1, 1, 1, 1)]
)
def test_grid_sizes(count: int, columns: int, width: int, rows: int) -> None:
    drawings = [UNIT_SQUARE] * count
    root = ET.fromstring(grid_svg(drawings, columns, cell=40))
    assert (int(root.get("width")), int(root.get("height"))) == (width * 40, rows * 40)
    assert len(polylines(grid_svg(drawings, columns, cell=40))) == count
    assert png_image(grid_png(drawings, columns, cell=40)).size == (width * 40, rows * 40)


def test_grid_cells_are_placed_in_reading_order() -> None:
    lines = polylines(grid_svg([UNIT_SQUARE] * 3, 2, cell=100, margin=0.1))
    assert [points[0] for points, _ in lines] == [(10, 10), (110, 10), (10, 110)]


def test_grid_labels_add_a_band_of_text() -> None:
    labels = ["cat", "dog <&>", "owl"]
    svg = grid_svg([UNIT_SQUARE] * 3, 2, cell=100, labels=labels)
    root = ET.fromstring(svg)
    assert [t.text for t in root.iter(f"{SVG}text")] == labels
    height = int(root.get("height"))
    assert height > 200
    image = png_image(grid_png([UNIT_SQUARE] * 3, 2, cell=100, labels=labels))
    assert image.size == (200, height)
    band = image.convert("L").crop((0, 100, 100, height // 2))
    assert band.getextrema()[0] < 128  # the label's text is drawn in the band


def test_grid_argument_errors() -> None:
    with pytest.raises(ValueError, match="columns"):
        grid_svg([UNIT_SQUARE], 0)
    with pytest.raises(ValueError, match="labels"):
        grid_png([UNIT_SQUARE], 1, labels=["a", "b"])
    with pytest.raises(DrawingError):
        grid_svg([], 3)


def test_json_round_trip(tmp_path) -> None:
    drawings = [TWO_STROKES, np.array([[0.1, -2.5, 1]], dtype=np.float32), np.zeros((0, 3))]
    path = tmp_path / "drawings.json"
    save_drawings(path, drawings)
    raw = json.loads(path.read_text())
    assert raw[1] == [[pytest.approx(0.1), -2.5, 1]] and isinstance(raw[1][0][2], int)
    loaded = load_drawings_json(path)
    assert len(loaded) == 3
    for original, back in zip(drawings, loaded):
        np.testing.assert_array_equal(back, np.asarray(original, dtype=np.float32))


def test_save_svg_and_png_grids(tmp_path) -> None:
    save_drawings(tmp_path / "grid.svg", [UNIT_SQUARE] * 5)
    root = ET.fromstring((tmp_path / "grid.svg").read_text())
    assert (root.get("width"), root.get("height")) == ("384", "256")  # 3 columns by default
    save_drawings(tmp_path / "grid.PNG", [UNIT_SQUARE] * 5, columns=5)
    assert png_image((tmp_path / "grid.PNG").read_bytes()).size == (640, 128)


def test_save_rejects_unknown_extension(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.json"):
        save_drawings(tmp_path / "drawings.gif", [UNIT_SQUARE])
    assert not (tmp_path / "drawings.gif").exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"a": 1}',
        "[[[0, 0, 0], [1, 2]]]",
        "[[[0, 0, 2]]]",
        "[[[NaN, 0, 1]]]",
        "[[[1e400, 0, 1]]]",
        '[[["x", 0, 1]]]',
        "[5]",
        "[" * 100_000,
    ],
)
def test_load_rejects_bad_content(tmp_path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DrawingError):
        load_drawings_json(path)


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(DrawingError, match="cannot read"):
        load_drawings_json(tmp_path / "absent.json")


@pytest.mark.parametrize("bad", [[[np.nan, 0, 1]], [[0, np.inf, 0]], [[0, 0, 0.5]], [[1, 2]]])
def test_invalid_drawings_raise_drawing_error(bad) -> None:
    for render in (to_svg, to_png, to_plotly, drawing_bounds):
        with pytest.raises(DrawingError):
            render(bad)
    with pytest.raises(DrawingError):
        grid_svg([UNIT_SQUARE, bad], 2)


@pytest.mark.parametrize(
    "options",
    [
        {"size": 0},
        {"margin": 0.5},
        {"stroke_width": 0},
        {"highlight_rows": -1},
        {"bounds": (1, 0, 0, 1)},
        {"bounds": (0, 0, np.nan, 1)},
    ],
)
def test_bad_options_raise_value_error(options: dict) -> None:
    for render in (to_svg, to_png, to_plotly):
        with pytest.raises(ValueError):
            render(UNIT_SQUARE, **options)


FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
STROKE3 = st.lists(st.tuples(FLOAT32, FLOAT32, st.sampled_from([0.0, 1.0])), max_size=20)


@settings(max_examples=60, deadline=None)
@given(rows=STROKE3, highlight_rows=st.integers(0, 25), stroke_width=st.floats(0.01, 8))
@example(rows=[(0.0, 0.0, 0.0)] * 5, highlight_rows=2, stroke_width=2.0)
@example(rows=[(3.0, 4.0, 1.0)], highlight_rows=0, stroke_width=2.0)
@example(rows=[(3e38, -3e38, 0.0)] * 4 + [(-3e38, 3e38, 1.0)], highlight_rows=3, stroke_width=2.0)
@example(rows=[(1e-45, 0.0, 0.0), (0.0, 1e-45, 1.0)], highlight_rows=1, stroke_width=2.0)
def test_any_finite_drawing_renders_inside_the_canvas(
    rows: list, highlight_rows: int, stroke_width: float
) -> None:
    strokes = np.array(rows, dtype=np.float32).reshape(-1, 3)
    size = 32
    options = {"highlight_rows": highlight_rows, "stroke_width": stroke_width}
    for points, _ in polylines(to_svg(strokes, size=size, **options)):
        coords = np.array(points)
        assert np.all(np.isfinite(coords))
        assert np.all((coords >= 0) & (coords <= size))
    assert png_image(to_png(strokes, size=size, **options)).size == (size, size)
    figure = to_plotly(strokes, bounds=drawing_bounds(strokes), **options)
    assert all(np.isfinite(figure.layout.xaxis.range)) and all(np.isfinite(figure.layout.yaxis.range))
