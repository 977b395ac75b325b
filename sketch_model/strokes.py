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

import numpy as np

from .errors import DrawingError, SketchError

END_OF_SKETCH = np.array([0.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32)


def as_stroke3(strokes: np.ndarray | list) -> np.ndarray:
    """Validate and return a float32 copy of a stroke-3 array; raises DrawingError."""
    try:
        arr = np.asarray(strokes, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise DrawingError(f"a stroke-3 drawing must be numeric rows [dx, dy, pen]: {err}") from None
    if arr.size == 0:
        return np.zeros((0, 3), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DrawingError(f"a stroke-3 drawing has shape (n, 3), not {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DrawingError("the drawing holds NaN or infinite values")
    if not np.all((arr[:, 2] == 0) | (arr[:, 2] == 1)):
        raise DrawingError("the pen column of a stroke-3 drawing must be 0 or 1")
    return arr.copy()


def stroke3_to_stroke5(strokes: np.ndarray, max_len: int) -> np.ndarray:
    """Convert stroke-3 to stroke-5 padded with end-of-sketch rows to `max_len` rows."""
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
    """Convert stroke-5 to stroke-3, cutting at the first end-of-sketch row."""
    s5 = np.asarray(strokes, dtype=np.float32)
    if s5.ndim != 2 or s5.shape[1] != 5:
        raise DrawingError(f"a stroke-5 drawing has shape (n, 5), not {s5.shape}")
    ends = np.flatnonzero(s5[:, 4] > 0)
    n = int(ends[0]) if len(ends) else len(s5)
    result = np.zeros((n, 3), dtype=np.float32)
    result[:, 0:2] = s5[:n, 0:2]
    result[:, 2] = s5[:n, 3]
    return result


def stroke3_to_polylines(strokes: np.ndarray) -> list[np.ndarray]:
    """Absolute polylines from stroke-3, starting at the origin; a trailing open stroke is kept."""
    s3 = as_stroke3(strokes)
    points = np.cumsum(s3[:, 0:2], axis=0)
    ends = np.flatnonzero(s3[:, 2] == 1) + 1
    if len(ends) == 0 or ends[-1] != len(s3):
        ends = np.append(ends, len(s3))
    starts = np.concatenate([[0], ends[:-1]])
    return [points[a:b] for a, b in zip(starts, ends) if b > a]


def polylines_to_stroke3(lines: list) -> np.ndarray:
    """stroke-3 from absolute polylines; the first offset is measured from the origin."""
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
    result[1:, 0:2] -= absolute[:-1, 0:2]
    return result.astype(np.float32)


def _as_points(points: np.ndarray | list) -> np.ndarray:
    """A float64 copy of one polyline as (k, 2) points; raises DrawingError."""
    try:
        pts = np.array(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DrawingError(f"a polyline must be numeric (x, y) points: {err}") from None
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


def rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of one polyline of (k, 2) points, as float64.

    Keeps the first and last point; a span's farthest point from its chord's line is kept
    (the first of equally far ones) when it lies more than `epsilon` away, and both halves are
    simplified in turn. Iterative, so any length of stroke is fine.
    """
    pts = _as_points(points)
    if not np.all(np.isfinite(pts)):
        raise DrawingError("the polyline holds NaN or infinite coordinates")
    if (not isinstance(epsilon, numbers.Real) or isinstance(epsilon, bool)
            or not math.isfinite(epsilon) or epsilon < 0):
        raise SketchError(f"epsilon must be a finite number >= 0, not {epsilon!r}")
    if len(pts) < 3:
        return pts
    keep = np.zeros(len(pts), dtype=bool)
    keep[[0, -1]] = True
    spans = [(0, len(pts) - 1)]
    while spans:
        first, last = spans.pop()
        distances = _chord_distances(pts[first + 1:last], pts[first], pts[last])
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
