"""streamlit-drawable-canvas JSON to polylines and stroke-3: Fabric.js placement, shapes, and
adversarial input, where DrawingError is the only error allowed out."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sketch_model.canvas import CIRCLE_SEGMENTS, canvas_to_stroke3, fabric_to_polylines
from sketch_model.errors import DrawingError

ZIGZAG = [(20, 20), (31, 27), (43, 35), (60, 50), (80, 52), (97, 47), (109, 39), (121, 31),
          (140, 25), (157, 37)]


def _cubic(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    t = np.linspace(0, 1, 4001)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def brush_path(samples: list, stroke_width: float = 5.0) -> dict:
    """A path object as Fabric.js 4.4's PencilBrush draws these pointer samples and toObject
    writes it (left/top/width/height rounded to 2 decimals)."""
    points = [np.asarray(p, dtype=float) for p in samples]
    nudge = stroke_width / 1000
    many = len(points) > 2
    sign = np.sign(points[2] - points[1]) if many else np.array([1.0, 0.0])
    path = [["M", *(points[0] - sign * nudge)]]
    for a, b in zip(points[:-1], points[1:]):
        if not np.array_equal(a, b):
            path.append(["Q", *a, *((a + b) / 2)])
    sign = np.sign(points[-1] - points[-2]) if many else np.array([1.0, 0.0])
    path.append(["L", *(points[-1] + sign * nudge)])
    path = [[c[0], *map(float, c[1:])] for c in path]
    # Fabric's box: each Q bounded as a cubic with both controls at the Q's control point.
    here, outline = np.array(path[0][1:]), [np.array([path[0][1:]])]
    for command in path[1:]:
        values = np.array(command[1:]).reshape(-1, 2)
        outline.append(_cubic(here, values[0], values[0], values[-1])
                       if command[0] == "Q" else values)
        here = values[-1]
    outline = np.vstack(outline)
    low, high = outline.min(axis=0), outline.max(axis=0)
    return {"type": "path", "version": "4.4.0", "originX": "left", "originY": "top",
            "left": round(float(low[0]) - stroke_width / 2, 2),
            "top": round(float(low[1]) - stroke_width / 2, 2),
            "width": round(float(high[0] - low[0]), 2), "height": round(float(high[1] - low[1]), 2),
            "fill": None, "stroke": "#000000", "strokeWidth": stroke_width,
            "strokeUniform": False, "scaleX": 1, "scaleY": 1, "angle": 0, "flipX": False,
            "flipY": False, "skewX": 0, "skewY": 0, "path": path}


def canvas(*objects: dict) -> dict:
    return {"version": "4.4.0", "objects": list(objects), "background": "#eeeeee"}


def only_line(json_data: dict) -> np.ndarray:
    lines, skipped = fabric_to_polylines(json_data)
    assert skipped == 0 and len(lines) == 1
    return lines[0]


def test_brush_path_writes_what_fabric_4_4_wrote() -> None:
    # streamlit-drawable-canvas's Fabric 4.4.0 capture of a freehand drag (stroke width 5).
    samples = [(19, 19), (31, 27), (43, 35), (55, 43), (67, 51), (79, 59), (91, 51), (103, 43),
               (115, 35), (127, 27), (139, 19), (151, 31), (163, 43), (175, 55), (187, 67),
               (199, 79), (211, 71), (223, 63), (235, 55), (247, 47)]
    obj = brush_path(samples)
    assert (obj["left"], obj["top"], obj["width"], obj["height"]) == (16.5, 16.5, 228.01, 58.79)
    assert obj["path"][:2] == [["M", 18.995, 18.995], ["Q", 19, 19, 25, 23]]
    assert obj["path"][-1] == ["L", 247.005, 46.995]
    np.testing.assert_array_equal(only_line(canvas(obj))[:-1], samples[:-1])


def test_an_untouched_brush_path_gives_back_its_pointer_samples() -> None:
    for samples in (ZIGZAG, [(5.5, 7.25), (6.75, 9.5), (9.0, 9.5)], [(10, 10), (30, 10)]):
        line = only_line(canvas(brush_path(samples)))
        np.testing.assert_array_equal(line[:-1], samples[:-1])
        # The last sample is only written nudged by strokeWidth/1000 (0.005 px here).
        np.testing.assert_allclose(line[-1], samples[-1], atol=0.0051)


def test_repeated_pointer_samples_count_once() -> None:
    samples = [(20, 20), (20, 20), (30, 25), (30, 25), (30, 25), (45, 21), (60, 30)]
    line = only_line(canvas(brush_path(samples)))
    np.testing.assert_array_equal(line[:-1], [(20, 20), (30, 25), (45, 21)])


def test_a_moved_path_moves_its_points() -> None:
    still = only_line(canvas(brush_path(ZIGZAG)))
    moved = brush_path(ZIGZAG)
    moved["left"] += 40.5
    moved["top"] -= 15
    # Only the untouched path is snapped back over toObject's rounding of left/top (< 0.01 px).
    np.testing.assert_allclose(only_line(canvas(moved)), still + [40.5, -15], atol=0.01)


def test_a_path_scaled_by_its_corner_handle_scales_about_its_top_left() -> None:
    still = only_line(canvas(brush_path(ZIGZAG)))
    scaled = brush_path(ZIGZAG) | {"scaleX": 2.0, "scaleY": 0.5}
    corner = np.array([scaled["left"], scaled["top"]])
    # The corner of the box around the stroke (half its width outside the points) stays put.
    np.testing.assert_allclose(only_line(canvas(scaled)), corner + [2.0, 0.5] * (still - corner),
                               atol=0.02)


def test_a_moved_and_scaled_path_with_an_explicit_path_offset() -> None:
    path = [["M", 10, 10], ["Q", 10, 10, 20, 15], ["Q", 30, 20, 30, 20], ["L", 30, 10]]
    obj = {"type": "path", "path": path, "left": 10, "top": 10, "width": 20, "height": 10,
           "scaleX": 1, "scaleY": 1, "angle": 0, "strokeWidth": 0,
           "pathOffset": {"x": 20, "y": 15}}
    points = np.array([[10, 10], [30, 20], [30, 10]], dtype=float)
    np.testing.assert_array_equal(only_line(canvas(obj)), points)
    moved = obj | {"left": 100, "top": 50, "scaleX": 2, "scaleY": 3}
    # The centre pathOffset lands at (left + width * scaleX / 2, top + height * scaleY / 2).
    expected = np.array([100 + 20, 50 + 15]) + [2, 3] * (points - [20, 15])
    np.testing.assert_allclose(only_line(canvas(moved)), expected)


def test_a_path_rotated_and_flipped_about_its_centre() -> None:
    obj = brush_path(ZIGZAG)
    still = only_line(canvas(obj))
    half = np.array([obj["width"], obj["height"]]) / 2 + obj["strokeWidth"] / 2
    centre = np.array([obj["left"], obj["top"]]) + half
    # Fabric's rotation handle turns the object about its centre and moves left/top with it.
    quarter = np.array([[0.0, -1.0], [1.0, 0.0]])
    rotated = obj | {"angle": 90}
    rotated["left"], rotated["top"] = centre + quarter @ -half
    np.testing.assert_allclose(only_line(canvas(rotated)), centre + (still - centre) @ quarter.T,
                               atol=0.02)
    flipped = obj | {"flipX": True}
    np.testing.assert_allclose(only_line(canvas(flipped)),
                               np.column_stack([2 * centre[0] - still[:, 0], still[:, 1]]),
                               atol=0.02)


def test_a_rect_moved_scaled_and_rotated_in_fabric_keeps_the_centre_the_user_gave_it() -> None:
    # Fabric 4.4.0's JSON after: a 120x80 rect drawn with its stroke box at (39, 39), moved by
    # (50, 30), scaled 1.42 from its top-left corner, rotated about its centre (stroke 3,
    # uniform). Its outline's centre stays at (89, 69) + (120 * 1.42 + 3, 80 * 1.42 + 3) / 2.
    rect = {"type": "rect", "originX": "left", "originY": "top", "left": 122.12, "top": 37.62,
            "width": 120, "height": 80, "strokeWidth": 3, "strokeUniform": True,
            "scaleX": 1.42, "scaleY": 1.42, "angle": 25.24}
    corners = only_line(canvas(rect))[:4]
    np.testing.assert_allclose(corners.mean(axis=0), [175.7, 127.3], atol=0.05)
    sides = np.linalg.norm(np.diff(corners, axis=0), axis=1)
    np.testing.assert_allclose(sides, [170.4, 113.6, 170.4])
    direction = corners[1] - corners[0]
    assert math.degrees(math.atan2(direction[1], direction[0])) == pytest.approx(25.24)


def test_the_polygon_tool_path_closes() -> None:
    obj = {"type": "path", "originX": "center", "originY": "center", "left": 149, "top": 99,
           "width": 200, "height": 140, "strokeWidth": 3,
           "path": [["M", 49, 29], ["L", 249, 29], ["L", 249, 169], ["L", 49, 169], ["z"]]}
    np.testing.assert_array_equal(only_line(canvas(obj)),
                                  [[49, 29], [249, 29], [249, 169], [49, 169], [49, 29]])


def test_lines_rects_and_circles_become_polylines() -> None:
    line = {"type": "line", "originX": "center", "originY": "center", "left": 134, "top": 89,
            "width": 230, "height": 140, "strokeWidth": 3,
            "x1": -115, "x2": 115, "y1": -70, "y2": 70}
    rect = {"type": "rect", "originX": "left", "originY": "top", "left": 29, "top": 29,
            "width": 70, "height": 60, "strokeWidth": 3, "strokeUniform": True,
            "scaleX": 1, "scaleY": 1, "angle": 0}
    circle = {"type": "circle", "originX": "left", "originY": "top", "left": 0, "top": 0,
              "radius": 10, "strokeWidth": 0, "startAngle": 0, "endAngle": 2 * math.pi}
    lines, skipped = fabric_to_polylines(canvas(line, rect, circle))
    assert skipped == 0
    np.testing.assert_array_equal(lines[0], [[19, 19], [249, 159]])
    # The outline runs down the middle of the 3 px stroke whose outer edge is at left/top.
    np.testing.assert_array_equal(
        lines[1], [[30.5, 30.5], [100.5, 30.5], [100.5, 90.5], [30.5, 90.5], [30.5, 30.5]])
    assert len(lines[2]) == CIRCLE_SEGMENTS + 1
    np.testing.assert_array_equal(lines[2][0], lines[2][-1])
    np.testing.assert_allclose(np.linalg.norm(lines[2] - [10, 10], axis=1), 10)


def test_objects_that_are_not_strokes_are_skipped_and_counted() -> None:
    arc = {"type": "circle", "radius": 5, "startAngle": 0, "endAngle": math.pi}
    lines, skipped = fabric_to_polylines(canvas(
        brush_path(ZIGZAG), {"type": "i-text", "text": "hi"}, {"type": "image"}, arc,
        {"type": "group", "objects": [brush_path(ZIGZAG)]}))
    assert len(lines) == 1 and skipped == 4


def test_canvas_to_stroke3_simplifies_in_canvas_pixels() -> None:
    straight = [(10 + i, 100 + 2 * i) for i in range(30)]
    strokes, skipped = canvas_to_stroke3(canvas(brush_path(straight), brush_path(ZIGZAG),
                                                 {"type": "textbox"}))
    assert skipped == 1
    assert strokes.dtype == np.float32
    np.testing.assert_array_equal(strokes[0], [10, 100, 0])
    np.testing.assert_allclose(strokes[1], [29, 58, 1], atol=0.01)
    assert strokes[:, 2].sum() == 2 and strokes[-1, 2] == 1
    absolute = np.cumsum(strokes[2:, :2], axis=0) + strokes[:2, :2].sum(axis=0)
    np.testing.assert_allclose(absolute[0], ZIGZAG[0])
    assert 3 <= len(absolute) < len(ZIGZAG)
    empty, skipped = canvas_to_stroke3(canvas())
    assert empty.shape == (0, 3) and skipped == 0


@pytest.mark.parametrize("json_data", [
    None, [], "objects", {}, {"objects": None}, {"objects": {"type": "path"}},
    canvas("path"), canvas({}), canvas({"type": 3}),
    canvas({"type": "path"}), canvas({"type": "path", "path": "M 0 0 L 1 1"}),
    canvas({"type": "path", "path": [["L", 1, 1]]}),
    canvas({"type": "path", "path": [["M", 1]]}),
    canvas({"type": "path", "path": [["A", 1, 1, 0, 0, 0, 2, 2]]}),
    canvas({"type": "path", "path": [[["M"], 1, 1]]}),
    canvas({"type": "path", "path": [["M", "1", 1]]}),
    canvas({"type": "path", "path": [["M", True, 1]]}),
    canvas({"type": "path", "path": [["M", math.nan, 1]]}),
    canvas({"type": "path", "path": [["M", 10**400, 1]]}),
    canvas(brush_path(ZIGZAG) | {"left": "10"}),
    canvas(brush_path(ZIGZAG) | {"scaleX": math.inf}),
    canvas(brush_path(ZIGZAG) | {"scaleX": 1e308, "left": 1e308}),
    canvas(brush_path(ZIGZAG) | {"flipX": "yes"}),
    canvas(brush_path(ZIGZAG) | {"originX": "middle"}),
    canvas(brush_path(ZIGZAG) | {"pathOffset": [1, 2]}),
    canvas(brush_path(ZIGZAG) | {"pathOffset": {"x": 1}}),
    canvas({"type": "line", "x1": 0, "y1": 0, "x2": 5}),
    canvas({"type": "rect", "width": None, "height": 3}),
    canvas({"type": "circle"}),
    canvas({"type": "polygon", "points": [{"x": 1, "y": "2"}]}),
])
def test_malformed_json_raises_drawing_error(json_data: object) -> None:
    with pytest.raises(DrawingError):
        canvas_to_stroke3(json_data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
    | st.sampled_from(["M", "L", "Q", "C", "z", "path", "left", "center", "line"]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=5),
    max_leaves=25)
TEMPLATES = [
    brush_path(ZIGZAG),
    {"type": "path", "originX": "center", "originY": "center", "left": 149, "top": 99,
     "path": [["M", 49, 29], ["L", 249, 29], ["C", 200, 100, 100, 150, 49, 169], ["z"]],
     "pathOffset": {"x": 149, "y": 99}},
    {"type": "line", "originX": "center", "originY": "center", "left": 134, "top": 89,
     "x1": -115, "x2": 115, "y1": -70, "y2": 70, "angle": 30, "skewX": 10},
    {"type": "rect", "left": 29, "top": 29, "width": 70, "height": 60, "strokeUniform": True},
    {"type": "circle", "left": 50, "top": 50, "radius": 20, "startAngle": 0, "endAngle": 360},
    {"type": "ellipse", "rx": 5, "ry": 8, "flipY": True},
    {"type": "triangle", "width": 10, "height": 10, "skewY": 5},
    {"type": "polygon", "points": [{"x": 1, "y": 2}, {"x": 5, "y": 9}, {"x": 0, "y": 4}]},
]
FIELDS = sorted({key for template in TEMPLATES for key in template} | {"pathOffset", "points"})


def check_only_drawing_errors(json_data: object) -> None:
    try:
        strokes, skipped = canvas_to_stroke3(json_data)
    except DrawingError:
        return
    assert strokes.ndim == 2 and strokes.shape[1] == 3 and np.all(np.isfinite(strokes))
    assert isinstance(skipped, int) and skipped >= 0


@given(json_values)
def test_arbitrary_json_raises_nothing_but_drawing_error(json_data: object) -> None:
    check_only_drawing_errors(json_data)
    check_only_drawing_errors({"objects": json_data})
    check_only_drawing_errors({"objects": [json_data]})


@settings(max_examples=300)
@given(st.sampled_from(TEMPLATES),
       st.lists(st.tuples(st.sampled_from(FIELDS), json_values), min_size=1, max_size=3),
       st.integers(0, 30), st.integers(0, 6), json_values)
def test_corrupted_objects_raise_nothing_but_drawing_error(
        template: dict, changes: list, command: int, slot: int, junk: object) -> None:
    obj = copy.deepcopy(template)
    for key, value in changes:
        obj[key] = value
    check_only_drawing_errors(canvas(obj))
    path = copy.deepcopy(template).get("path")
    if path:  # one value of one path command replaced
        entry = path[command % len(path)]
        if slot < len(entry):
            entry[slot] = junk
        else:
            entry.append(junk)
        check_only_drawing_errors(canvas(copy.deepcopy(template) | {"path": path}))


def test_fabric_7_paths_of_streamlit_drawable_canvas_0_13() -> None:
    """Fabric 7 (the installed canvas) names the type "Path" and centres the object on
    left/top; the pointer samples must come back in order and shape (this hand-made object's
    box is the samples', not Fabric's curve box, so only a shift is allowed)."""
    samples = [(20.0, 30.0), (60.0, 35.0), (90.0, 80.0), (40.0, 120.0)]
    xs, ys = [p[0] for p in samples], [p[1] for p in samples]
    path = [["M", *samples[0]]]
    path += [["Q", x0, y0, (x0 + x1) / 2, (y0 + y1) / 2] for (x0, y0), (x1, y1) in zip(samples, samples[1:])]
    path.append(["L", *samples[-1]])
    obj = {"type": "Path", "version": "7.4.0", "originX": "center", "originY": "center",
           "left": (min(xs) + max(xs)) / 2, "top": (min(ys) + max(ys)) / 2,
           "width": max(xs) - min(xs), "height": max(ys) - min(ys), "strokeWidth": 3,
           "scaleX": 1, "scaleY": 1, "angle": 0, "path": path}
    lines, skipped = fabric_to_polylines({"objects": [obj]})
    assert skipped == 0 and len(lines) == 1
    np.testing.assert_allclose(lines[0] - lines[0][0], np.subtract(samples, samples[0]), atol=1e-6)


def test_polylines_to_fabric_round_trip():
    """Paths written for a canvas's initial drawing parse back to the same points, where they
    were: the parser is the reference (checked against Fabric.js in the browser tests)."""
    from sketch_model.canvas import polylines_to_fabric

    lines = [np.array([[10.5, 20.0], [50.0, 80.25], [90.0, 30.0]]),
             np.array([[200.0, 200.0], [250.0, 210.0]]), np.array([[5.0, 5.0]])]
    objects = polylines_to_fabric(lines, color="#1f77b4", width=3.0)
    assert [o["stroke"] for o in objects] == ["#1f77b4"] * 3
    back, skipped = fabric_to_polylines({"objects": objects})
    assert skipped == 0 and len(back) == 3
    for mine, theirs in zip(lines, back):
        np.testing.assert_allclose(theirs, mine, atol=1e-9)
    with pytest.raises(DrawingError):
        polylines_to_fabric([np.array([[np.nan, 1.0]])])
