"""Stroke formats: stroke-3, stroke-5 and absolute polylines.

stroke-3: float array (n, 3) of rows [dx, dy, pen_lifted]; pen_lifted is 1 on the last point
of each stroke. The first row's offset is from the origin (0, 0).
stroke-5: float array (N_max, 5) of rows [dx, dy, p1, p2, p3] (pen down, pen up after this
point, end of sketch), padded with (0, 0, 0, 0, 1) after the sketch, as the paper trains.
polylines: a list of strokes, each a float array (k, 2) of absolute (x, y) points.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .errors import DrawingError, SketchError

END_OF_SKETCH = np.array([0.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32)
_SAFE_LOW, _SAFE_HIGH = 2.0**-500, 2.0**500  # rdp rescales points beyond these magnitudes


def as_stroke3(strokes: np.ndarray | list) -> np.ndarray:
    """Validate and return a float32 copy of a stroke-3 array; raises DrawingError."""
    return _checked_rows(strokes, 3).copy()


_COLUMNS = {3: "[dx, dy, pen]", 5: "[dx, dy, p1, p2, p3]"}


def _checked_rows(data: object, width: int) -> np.ndarray:
    """`data` as float32 stroke-3 or stroke-5 rows (width 3 or 5), finite, with pens 0 or 1."""
    kind = f"stroke-{width}"
    arr = _as_float32(data, f"a {kind} drawing must be numeric rows {_COLUMNS[width]}")
    if arr.size == 0:
        return np.zeros((0, width), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise DrawingError(f"a {kind} drawing has shape (n, {width}), not {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DrawingError("the drawing holds NaN or infinite values")
    if not np.all((arr[:, 2:] == 0) | (arr[:, 2:] == 1)):
        pens = "pen column" if width == 3 else "pen columns"
        raise DrawingError(f"the {pens} of a {kind} drawing must be 0 or 1")
    return arr


def _as_float32(data: object, what: str) -> np.ndarray:
    """`data` as a float32 array; DrawingError (starting with `what`) if it is not numeric.
    Values beyond float32 become infinities, which the callers refuse."""
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(data, np.ndarray) and data.dtype.kind in "biuf":
            return data.astype(np.float32, copy=False)
        return _convert(data, np.float32, what)


def _convert(data: object, dtype: type, what: str) -> np.ndarray:
    """np.asarray(data, dtype) for real numbers only; DrawingError (starting with `what`)
    for anything else, complex numbers included (numpy would drop their imaginary part)."""
    if isinstance(data, np.ndarray) and data.dtype.kind == "c":
        raise DrawingError(f"{what}, not complex numbers")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            return np.array(data, dtype=dtype)
    except np.exceptions.ComplexWarning:
        raise DrawingError(f"{what}, not complex numbers") from None
    except (TypeError, ValueError, OverflowError) as err:
        raise DrawingError(f"{what}: {err}") from None


def _check_length(value: object, name: str, minimum: int) -> int:
    """`value` as an int of at least `minimum`; raises SketchError."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) \
            or value < minimum:
        raise SketchError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return int(value)


def stroke3_to_stroke5(strokes: np.ndarray, max_len: int) -> np.ndarray:
    """Convert stroke-3 to stroke-5 padded with end-of-sketch rows to `max_len` rows."""
    max_len = _check_length(max_len, "max_len", 0)
    s3 = as_stroke3(strokes)
    n = len(s3)
    if n > max_len:
        raise DrawingError(f"the drawing has {n} points, more than max_len={max_len}")
    result = np.tile(END_OF_SKETCH, (max_len, 1))
    result[:n, 0:2] = s3[:, 0:2]
    result[:n, 3] = s3[:, 2]
    result[:n, 2] = 1.0 - s3[:, 2]
    result[:n, 4] = 0.0
    return result


def stroke5_to_stroke3(strokes: np.ndarray) -> np.ndarray:
    """Convert stroke-5 to stroke-3, cutting at the first end-of-sketch row.

    Raises DrawingError unless the rows are finite [dx, dy, p1, p2, p3] with pens 0 or 1.
    """
    s5 = _checked_rows(strokes, 5)
    if s5.size == 0:
        return np.zeros((0, 3), dtype=np.float32)
    ends = np.flatnonzero(s5[:, 4] > 0)
    n = int(ends[0]) if len(ends) else len(s5)
    result = np.zeros((n, 3), dtype=np.float32)
    result[:, 0:2] = s5[:n, 0:2]
    result[:, 2] = s5[:n, 3]
    return result


def stroke3_to_polylines(strokes: np.ndarray) -> list[np.ndarray]:
    """Absolute polylines from stroke-3, starting at the origin; a trailing open stroke is kept."""
    s3 = as_stroke3(strokes)
    with np.errstate(over="ignore", invalid="ignore"):
        points = np.cumsum(s3[:, 0:2], axis=0)
    if not np.all(np.isfinite(points)):
        raise DrawingError("the drawing's points lie beyond the range of float32")
    ends = np.flatnonzero(s3[:, 2] == 1) + 1
    if len(ends) == 0 or ends[-1] != len(s3):
        ends = np.append(ends, len(s3))
    starts = np.concatenate([[0], ends[:-1]])
    return [points[a:b] for a, b in zip(starts, ends) if b > a]


def polylines_to_stroke3(lines: list) -> np.ndarray:
    """stroke-3 from absolute polylines; the first offset is measured from the origin."""
    if isinstance(lines, (str, bytes, dict)) or not hasattr(lines, "__iter__") \
            or (isinstance(lines, np.ndarray) and lines.ndim == 0):
        raise DrawingError(f"polylines must be a list of (k, 2) point arrays, not "
                           f"{type(lines).__name__}")
    rows = []
    for line in lines:
        pts = _as_points(line)
        if len(pts) == 0:
            continue
        pen = np.zeros((len(pts), 1))
        pen[-1, 0] = 1.0
        rows.append(np.hstack([pts, pen]))
    if not rows:
        return np.zeros((0, 3), dtype=np.float32)
    absolute = np.vstack(rows)
    if not np.all(np.isfinite(absolute)):
        raise DrawingError("the drawing holds NaN or infinite coordinates")
    result = absolute.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        result[1:, 0:2] -= absolute[:-1, 0:2]
        result = result.astype(np.float32)
    if not np.all(np.isfinite(result)):
        raise DrawingError("the drawing's points are too far apart for float32 offsets")
    return result


def _as_points(points: np.ndarray | list) -> np.ndarray:
    """A float64 copy of one polyline as (k, 2) points; raises DrawingError."""
    pts = _convert(points, np.float64, "a polyline must be numeric (x, y) points")
    if pts.size == 0:
        return np.zeros((0, 2))
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DrawingError(f"a polyline has shape (k, 2), not {pts.shape}")
    return pts


def _chord_distances(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distances of `points` from the line through `start` and `end` (from `start` if equal)."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    if dx == 0 and dy == 0:
        return np.hypot(points[:, 0] - start[0], points[:, 1] - start[1])
    # This exact expression (and first-of-equals below) reproduces Google's RDP choices among
    # points tied up to rounding, e.g. along a segment parallel to the chord.
    cross = dx * (start[1] - points[:, 1]) - dy * (start[0] - points[:, 0])
    return np.abs(cross) / np.hypot(dx, dy)


def _in_safe_range(pts: np.ndarray, epsilon: float) -> tuple[np.ndarray, float]:
    """`pts` and `epsilon` scaled by one power of two so that chord distances can neither
    overflow nor underflow (exact, so RDP's choices are unchanged); as given when the points
    already lie within 2**-500 .. 2**500, as every real drawing does."""
    peak = float(np.max(np.abs(pts)))
    if peak == 0 or _SAFE_LOW <= peak <= _SAFE_HIGH:
        return pts, epsilon
    exponent = math.frexp(peak)[1]
    try:
        scaled_epsilon = math.ldexp(epsilon, -exponent)
    except OverflowError:
        scaled_epsilon = math.inf
    return np.ldexp(pts, -exponent), scaled_epsilon


def rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of one polyline of (k, 2) points, as float64.

    Keeps the first and last point; a span's farthest point from its chord's line is kept
    (the first of equally far ones) when it lies more than `epsilon` away, and both halves are
    simplified in turn. Iterative, so any length of stroke is fine.
    """
    pts = _as_points(points)
    if not np.all(np.isfinite(pts)):
        raise DrawingError("the polyline holds NaN or infinite coordinates")
    try:
        valid = (isinstance(epsilon, numbers.Real) and not isinstance(epsilon, bool)
                 and math.isfinite(epsilon) and epsilon >= 0)
    except OverflowError:  # an int beyond any float
        valid = False
    if not valid:
        raise SketchError(f"epsilon must be a finite number >= 0, not {epsilon!r}")
    if len(pts) < 3:
        return pts
    work, epsilon = _in_safe_range(pts, float(epsilon))
    keep = np.zeros(len(pts), dtype=bool)
    keep[[0, -1]] = True
    spans = [(0, len(pts) - 1)]
    while spans:
        first, last = spans.pop()
        distances = _chord_distances(work[first + 1:last], work[first], work[last])
        farthest = int(np.argmax(distances))
        if distances[farthest] > epsilon:
            split = first + 1 + farthest
            keep[split] = True
            spans.extend(span for span in ((first, split), (split, last)) if span[1] - span[0] > 1)
    return pts[keep]


def simplify_stroke3(strokes: np.ndarray, epsilon: float) -> np.ndarray:
    """RDP-simplify every stroke of a stroke-3 drawing in absolute coordinates; stroke-3 back.

    Every stroke, a trailing open one included, ends with the pen lifted in the result.
    """
    return polylines_to_stroke3([rdp(line, epsilon) for line in stroke3_to_polylines(strokes)])


def longest_side(strokes: np.ndarray | list) -> float:
    """The longer side of a drawing's bounding box (its start point included)."""
    s3 = as_stroke3(strokes)
    points = np.cumsum(np.vstack([np.zeros((1, 2)), s3[:, 0:2].astype(np.float64)]), axis=0)
    return float(np.ptp(points, axis=0).max())


def rescale(strokes: np.ndarray | list, factor: float) -> np.ndarray:
    """The drawing with its moves multiplied by `factor` (pen states unchanged)."""
    s3 = as_stroke3(strokes)
    s3[:, 0:2] *= factor
    return s3


def fit_to_model(strokes: np.ndarray, max_len: int) -> tuple[np.ndarray, str | None]:
    """A drawing of at most `max_len` points, and a message saying what was done (None if
    nothing). RDP with a growing epsilon (relative to the drawing's size) comes first, so the
    shape is kept; if even a coarse simplification is too long, the drawing is cut."""
    max_len = _check_length(max_len, "max_len", 1)
    s3 = as_stroke3(strokes)
    if len(s3) <= max_len:
        return s3, None
    points = np.cumsum(s3[:, 0:2].astype(np.float64), axis=0)
    extent = float(np.ptp(points, axis=0).max()) or 1.0
    for fraction in (0.002, 0.005, 0.01, 0.02, 0.03):
        simplified = simplify_stroke3(s3, fraction * extent)
        if len(simplified) <= max_len:
            return simplified, (f"the drawing had {len(s3)} points, more than this model takes "
                                f"({max_len}); it was simplified to {len(simplified)} points")
    cut = simplified[:max_len].copy()
    cut[-1, 2] = 1.0
    return cut, (f"the drawing had {len(s3)} points, more than this model takes ({max_len}); "
                 f"it was simplified and then cut to its first {max_len} points")
