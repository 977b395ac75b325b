"""streamlit-drawable-canvas drawings (Fabric.js 4/5 JSON) to polylines and stroke-3.

Everything is in canvas pixels. Fabric.js renders an object's own points p as
    centre + R(angle) · S(scaleX, scaleY, flips) · skewX · skewY · (p - pivot),
where the pivot is a path's (or polyline's) `pathOffset`, the centre of its bounding box, and
0 for shapes drawn about their centre (rect, circle, line...). The centre is found from
left/top: moved by half the object's transformed size, stroke included, per originX/originY,
then rotated about left/top by the angle. A freehand path's points are the pointer positions
the brush sampled: its Q commands' control points, then its final L.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DrawingError
from .strokes import polylines_to_stroke3, rdp

CIRCLE_SEGMENTS = 64  # polygon sides for circles and ellipses
# toObject rounds left/top/width/height to 2 decimals, so a path that was never moved lands
# up to 0.0075 px off its own points: a translation this small is taken as none.
UNMOVED_TOLERANCE = 0.01
_PATH_ARITY = {"M": 2, "L": 2, "Q": 4, "C": 6, "Z": 0, "z": 0}
_ORIGINS = {"left": -0.5, "top": -0.5, "center": 0.0, "right": 0.5, "bottom": 0.5}


def _number(value: object, what: str) -> float:
    """`value` as a finite float; raises DrawingError naming `what`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DrawingError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise DrawingError(f"{what} is too large") from None
    if not math.isfinite(number):
        raise DrawingError(f"{what} must be finite, not {value!r}")
    return number


def _field(obj: dict, key: str, default: float | None = None) -> float:
    """A numeric field of a Fabric object, `default` when absent (required if None)."""
    if key not in obj:
        if default is None:
            raise DrawingError(f"a {obj.get('type')} object has no {key!r}")
        return default
    return _number(obj[key], f"{obj.get('type')}.{key}")


def _flag(obj: dict, key: str) -> bool:
    """A boolean field of a Fabric object, False when absent."""
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise DrawingError(f"{obj.get('type')}.{key} must be true or false, not {value!r}")
    return value


def _origin(obj: dict, key: str, default: str) -> float:
    """originX/originY as an offset from the centre, in object sizes (left is -0.5)."""
    value = obj.get(key, default)
    if isinstance(value, str) and value in _ORIGINS:
        return _ORIGINS[value]
    return _number(value, f"{obj.get('type')}.{key}") - 0.5


def _cubic_bounds(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> list:
    """The points of a cubic Bezier where x or y is extreme, ends excluded."""
    points = []
    for axis in (0, 1):
        a = -3 * p0[axis] + 9 * p1[axis] - 9 * p2[axis] + 3 * p3[axis]
        b = 6 * p0[axis] - 12 * p1[axis] + 6 * p2[axis]
        c = 3 * p1[axis] - 3 * p0[axis]
        if abs(a) < 1e-12:
            roots = [-c / b] if abs(b) > 1e-12 else []
        else:
            disc = b * b - 4 * a * c
            roots = [] if disc < 0 else [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1, -1)]
        for t in roots:
            if 0 < t < 1:
                u = 1 - t
                points.append(u**3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t**3 * p3)
    return points


def _path(obj: dict) -> tuple[list[np.ndarray], np.ndarray, float, float]:
    """A path's polylines in its own coordinates, its pivot, and its width and height.

    The size is Fabric's, which bounds a Q segment as a cubic with both controls at the Q's
    control point; the pivot is `pathOffset` when given, else the centre of that box.
    """
    commands = obj.get("path")
    if not isinstance(commands, list):
        raise DrawingError("a path object has no list of path commands")
    nudge = _field(obj, "strokeWidth", 1.0) / 1000 + 1e-9
    lines: list[list[np.ndarray]] = []
    bounds: list[np.ndarray] = []
    here = start = np.zeros(2)
    parsed = []
    for i, command in enumerate(commands):
        if (not isinstance(command, list) or not command or not isinstance(command[0], str)
                or command[0] not in _PATH_ARITY):
            raise DrawingError(f"path command {i} is not one Fabric.js writes: {command!r}")
        if len(command) != 1 + _PATH_ARITY[command[0]]:
            raise DrawingError(f"path command {i} ({command[0]}) has the wrong number of values")
        values = np.array([_number(v, f"path command {i}") for v in command[1:]])
        parsed.append((command[0], values.reshape(-1, 2)))
    for i, (op, points) in enumerate(parsed):
        if op != "M" and not lines:
            raise DrawingError("a path must start with an M command")
        if op == "M":
            here = start = points[0]
            lines.append([])
            following = parsed[i + 1] if i + 1 < len(parsed) else None
            # The brush writes its first sample again, nudged by strokeWidth/1000, as the M.
            if not (following and following[0] == "Q"
                    and np.all(np.abs(following[1][0] - here) <= nudge)):
                lines[-1].append(here)
        elif op == "L":
            here = points[0]
            lines[-1].append(here)
        elif op == "Q":
            control, end = points
            bounds += _cubic_bounds(here, control, control, end)
            lines[-1].append(control)
            here = end
        elif op == "C":
            bounds += _cubic_bounds(here, points[0], points[1], points[2])
            here = points[2]
            lines[-1].append(here)
        else:
            here = start
            lines[-1].append(here)
        bounds.append(here)
    if not bounds:
        return [], np.zeros(2), 0.0, 0.0
    low, high = np.min(bounds, axis=0), np.max(bounds, axis=0)
    lines = [np.array(line).reshape(-1, 2) for line in lines]
    return lines, _pivot(obj, low + (high - low) / 2), *(high - low)


def _pivot(obj: dict, centre: np.ndarray) -> np.ndarray:
    """An object's `pathOffset` when its JSON has one, else the centre of its points' box."""
    if "pathOffset" not in obj:
        return centre
    offset = obj["pathOffset"]
    if not isinstance(offset, dict):
        raise DrawingError(f"{obj.get('type')}.pathOffset must be an object {{x, y}}")
    return np.array([_field(offset, "x"), _field(offset, "y")])


def _poly(obj: dict, closed: bool) -> tuple[list[np.ndarray], np.ndarray, float, float]:
    """A polyline's or polygon's points in its own coordinates, pivot, width and height."""
    points = obj.get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise DrawingError(f"a {obj.get('type')} object has no list of points {{x, y}}")
    line = np.array([[_field(p, "x"), _field(p, "y")] for p in points]).reshape(-1, 2)
    if len(line) == 0:
        return [], np.zeros(2), 0.0, 0.0
    low, high = line.min(axis=0), line.max(axis=0)
    if closed:
        line = np.vstack([line, line[:1]])
    return [line], _pivot(obj, low + (high - low) / 2), *(high - low)


def _ellipse(rx: float, ry: float) -> list[np.ndarray]:
    """A closed polygon around an ellipse centred on 0."""
    angles = np.linspace(0.0, 2 * math.pi, CIRCLE_SEGMENTS, endpoint=False)
    points = np.stack([rx * np.cos(angles), ry * np.sin(angles)], axis=1)
    return [np.vstack([points, points[:1]])]


def _full_turn(obj: dict) -> bool:
    """Whether a circle's start/end angles (radians in Fabric 4, degrees in 5) close it."""
    start, end = _field(obj, "startAngle", 0.0), _field(obj, "endAngle", 2 * math.pi)
    return start == 0 and (math.isclose(end, 2 * math.pi) or math.isclose(end, 360.0))


def _shape(obj: dict) -> tuple[list[np.ndarray], np.ndarray, float, float] | None:
    """An object's polylines in its own coordinates, pivot, width and height; None if unknown."""
    kind = obj["type"].lower()  # Fabric 4/5 write "path", Fabric 6/7 (canvas 0.13) "Path"
    if kind == "path":
        return _path(obj)
    if kind in ("polyline", "polygon"):
        return _poly(obj, closed=kind == "polygon")
    centre = np.zeros(2)
    if kind == "line":
        x1, y1, x2, y2 = (_field(obj, key) for key in ("x1", "y1", "x2", "y2"))
        half = np.array([(x1 - x2) / 2, (y1 - y2) / 2])
        return [np.stack([half, -half])], centre, abs(x2 - x1), abs(y2 - y1)
    if kind in ("rect", "triangle"):
        w, h = _field(obj, "width"), _field(obj, "height")
        if kind == "rect":
            corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
        else:
            corners = [(-w / 2, h / 2), (0.0, -h / 2), (w / 2, h / 2)]
        return [np.array(corners + corners[:1])], centre, w, h
    if kind == "circle":
        r = _field(obj, "radius")
        return (_ellipse(r, r), centre, 2 * r, 2 * r) if _full_turn(obj) else None
    if kind == "ellipse":
        rx, ry = _field(obj, "rx"), _field(obj, "ry")
        return _ellipse(rx, ry), centre, 2 * rx, 2 * ry
    return None


def _placement(obj: dict, pivot: np.ndarray, width: float, height: float) -> tuple:
    """(matrix, shift) taking an object's own points p to canvas pixels: matrix @ p + shift."""
    scale = np.array([_field(obj, "scaleX", 1.0), _field(obj, "scaleY", 1.0)])
    skew_x, skew_y = _field(obj, "skewX", 0.0), _field(obj, "skewY", 0.0)
    angle = math.radians(_field(obj, "angle", 0.0))
    stroke = _field(obj, "strokeWidth", 1.0)
    uniform = _flag(obj, "strokeUniform")
    flips = np.array([-1.0 if _flag(obj, "flipX") else 1.0, -1.0 if _flag(obj, "flipY") else 1.0])
    corner = np.array([_field(obj, "left", 0.0), _field(obj, "top", 0.0)])
    skewing = (np.array([[1.0, math.tan(math.radians(skew_x))], [0.0, 1.0]])
               @ np.array([[1.0, 0.0], [math.tan(math.radians(skew_y)), 1.0]]))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = rotation @ np.diag(scale * flips) @ skewing
    # Fabric's _getTransformedDimensions: the size that originX/originY are fractions of.
    size = np.array([width, height]) + (0.0 if uniform else stroke)
    if skew_x or skew_y:
        half = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * size / 2
        corners = half @ (np.diag(scale) @ skewing).T
        size = corners.max(axis=0) - corners.min(axis=0)
    else:
        size = size * scale
    size = size + (stroke if uniform else 0.0)
    offset = -np.array([_origin(obj, "originX", "left"), _origin(obj, "originY", "top")]) * size
    shift = corner + rotation @ offset - matrix @ pivot
    if np.array_equal(matrix, np.eye(2)) and np.all(np.abs(shift) <= UNMOVED_TOLERANCE):
        shift = np.zeros(2)
    return matrix, shift


def _dedupe(line: np.ndarray) -> np.ndarray:
    """`line` without points equal to the point before them."""
    repeated = np.all(line[1:] == line[:-1], axis=1)
    return line[np.concatenate([[True], ~repeated])]


def fabric_to_polylines(json_data: dict) -> tuple[list[np.ndarray], int]:
    """Absolute polylines, in canvas pixels, of a streamlit-drawable-canvas `json_data`.

    Paths (freehand and polygon tools), lines, rects, triangles, circles, ellipses, polylines
    and polygons are converted, closed shapes as closed polygons; other objects (text,
    images, groups, circle arcs) are skipped. Returns (polylines, number of skipped objects).
    Raises DrawingError on malformed JSON.
    """
    if not isinstance(json_data, dict) or not isinstance(json_data.get("objects"), list):
        raise DrawingError("canvas JSON must be an object with a list of 'objects'")
    polylines, skipped = [], 0
    for i, obj in enumerate(json_data["objects"]):
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise DrawingError(f"canvas object {i} is not an object with a 'type'")
        # Absurd sizes may overflow on the way; the result is checked below.
        with np.errstate(all="ignore"):
            shape = _shape(obj)
            if shape is None:
                skipped += 1
                continue
            lines, pivot, width, height = shape
            matrix, shift = _placement(obj, pivot, width, height)
            placed = [_dedupe(line) @ matrix.T + shift for line in lines if len(line)]
        if not all(np.all(np.isfinite(line)) for line in placed):
            raise DrawingError(f"canvas object {i} lands outside the range of floats")
        polylines += placed
    return polylines, skipped


def canvas_to_stroke3(json_data: dict, epsilon: float = 2.0) -> tuple[np.ndarray, int]:
    """stroke-3 in canvas pixels of a canvas drawing, each stroke RDP-simplified by `epsilon`.

    Returns (stroke-3, number of skipped objects); the pen lifts on each stroke's last point.
    Raises DrawingError on malformed JSON.
    """
    polylines, skipped = fabric_to_polylines(json_data)
    return polylines_to_stroke3([rdp(line, epsilon) for line in polylines]), skipped


def polylines_to_fabric(polylines: list, color: str = "#000000", width: float = 3.0) -> list[dict]:
    """Fabric.js path objects that draw absolute `polylines` (canvas pixels) where they are:
    what a canvas's initial drawing takes to hold strokes made elsewhere (a model's)."""
    objects = []
    for line in polylines:
        points = np.asarray(line, dtype=np.float64).reshape(-1, 2)
        if len(points) == 0 or not np.all(np.isfinite(points)):
            raise DrawingError("a polyline must hold finite points")
        low, high = points.min(axis=0), points.max(axis=0)
        commands = [["M", *points[0]]] + [["L", *p] for p in points[1:]]
        if len(points) == 1:  # a dot: Fabric draws nothing for a lone M
            commands.append(["L", *points[0]])
        objects.append({
            "type": "path", "version": "4.4.0", "originX": "left", "originY": "top",
            "left": float(low[0] - width / 2), "top": float(low[1] - width / 2),
            "width": float(high[0] - low[0]), "height": float(high[1] - low[1]),
            "pathOffset": {"x": float((low[0] + high[0]) / 2), "y": float((low[1] + high[1]) / 2)},
            "fill": None, "stroke": color, "strokeWidth": float(width),
            "strokeLineCap": "round", "strokeLineJoin": "round",
            "path": [[c[0], *(float(v) for v in c[1:])] for c in commands],
        })
    return objects
