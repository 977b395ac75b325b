"""Quick, Draw! preprocessing: raw pen traces to Google's "simplified" format, and stroke-3.

Google describes its simplified files as: align the drawing to the top-left corner (minimum
x and y 0), scale it uniformly so the largest coordinate is 255, resample every stroke at
1-pixel spacing, simplify every stroke with RDP (epsilon 2.0), keep integer coordinates.
Done as below, in float64, this reproduces Google's files point for point on the bundled
raw/simplified pairs (tests/test_quickdraw.py measures it). Where the arithmetic matters it
is because RDP often meets points tied up to rounding (pen segments parallel to a chord),
and the tie goes to whichever point the rounding favours.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from .errors import DataFileError, DrawingError, SketchError
from .files import check_output_path
from .strokes import polylines_to_stroke3, rdp

SIMPLIFIED_SIZE = 255.0
RESAMPLE_SPACING = 1.0
RDP_EPSILON = 2.0
# A drawing of more points than this, as read or once resampled (the length of its strokes,
# scaled to 255, in pixels), is refused: no pen trace is that long, and one crafted to be (a
# long stroke, or a million one-point strokes) would take minutes and gigabytes to resample
# and simplify.
MAX_RESAMPLED_POINTS = 100_000
# Likewise a drawing of more strokes than this: each costs a few numpy calls (Google's
# drawings have tens of strokes; 2000 take well under a second).
MAX_STROKES = 2000
# An ndjson line longer than this is skipped as malformed without being read into memory
# whole: Google's longest raw drawings are a few hundred kilobytes.
MAX_LINE_BYTES = 16 * 1024**2
# The fields of Google's simplified ndjson files, in their order.
SIMPLIFIED_FIELDS = ("word", "countrycode", "timestamp", "recognized", "key_id", "drawing")


def _strokes(drawing: object, rows: tuple[int, ...]) -> list[np.ndarray]:
    """The (k, 2) float64 points of each stroke of an ndjson drawing; raises DrawingError."""
    if not isinstance(drawing, list) or not drawing:
        raise DrawingError("a Quick, Draw! drawing is a non-empty list of strokes")
    if len(drawing) > MAX_STROKES:
        raise DrawingError(f"the drawing has {len(drawing)} strokes, "
                           f"over the limit of {MAX_STROKES}")
    strokes, total = [], 0
    for i, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) not in rows:
            raise DrawingError(f"stroke {i} is not a list of {' or '.join(map(str, rows))} rows")
        total += len(stroke[0]) if isinstance(stroke[0], list) else 0
        if total > MAX_RESAMPLED_POINTS:  # checked as it goes: the check costs no more than that
            raise DrawingError(f"the drawing has over {MAX_RESAMPLED_POINTS} points")
        if not all(isinstance(row, list) for row in stroke):
            raise DrawingError(f"stroke {i} has a row that is not a list")
        if len({len(row) for row in stroke}) != 1 or not stroke[0]:
            raise DrawingError(f"stroke {i} has no points or rows of different lengths")
        values = stroke[0] + stroke[1]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise DrawingError(f"stroke {i} holds a coordinate that is not a number")
        try:
            points = np.array(stroke[:2], dtype=np.float64).T
        except OverflowError:
            raise DrawingError(f"stroke {i} holds a coordinate too large for a float") from None
        if not np.all(np.isfinite(points)):
            raise DrawingError(f"stroke {i} holds NaN or infinite coordinates")
        strokes.append(points)
    return strokes


def resample(points: np.ndarray, spacing: float = RESAMPLE_SPACING,
             max_points: int = MAX_RESAMPLED_POINTS) -> np.ndarray:
    """Points every `spacing` along a polyline's length from its first point, then its last.

    A stroke of no length comes back as its first and last point, so a single dot is two
    equal points, as in Google's files. A stroke that would give over `max_points` points
    raises DrawingError.
    """
    deltas = np.diff(points, axis=0)
    # Not np.hypot, and the interpolation below as written: both move samples by an ulp or
    # so, which is enough to change RDP's tie-breaks against Google's files.
    with np.errstate(over="ignore", invalid="ignore"):
        lengths = np.sqrt(deltas[:, 0] * deltas[:, 0] + deltas[:, 1] * deltas[:, 1])
        ends = np.concatenate([[0.0], np.cumsum(lengths)])
    if ends[-1] == 0:
        if max_points < 2:
            raise DrawingError(f"the drawing has over {MAX_RESAMPLED_POINTS} points once resampled")
        return points[[0, -1]]
    if not ends[-1] / spacing <= max_points:  # NaN and infinity included
        raise DrawingError(f"the drawing is too long to resample: over {MAX_RESAMPLED_POINTS} "
                           f"points at a spacing of {spacing}")
    at = np.arange(0.0, ends[-1], spacing)
    # side="right" puts a sample on the segment that starts there, never on a zero-length one.
    segment = np.searchsorted(ends, at, side="right") - 1
    fraction = ((at - ends[segment]) / lengths[segment])[:, None]
    samples = points[segment] * (1 - fraction) + points[segment + 1] * fraction
    return np.vstack([samples, points[-1:]])


def preprocess_raw_drawing(drawing: list) -> list[list[list[int]]]:
    """Google's simplified strokes [[x...], [y...]] (ints, 0-255) of a raw ndjson `drawing`.

    `drawing` is a list of strokes [[x...], [y...], [t...]] (the times are ignored and may be
    left out). Raises DrawingError on a malformed drawing.
    """
    strokes = _strokes(drawing, rows=(2, 3))
    points = np.vstack(strokes)
    origin = points.min(axis=0)
    with np.errstate(over="ignore"):
        size = float((points.max(axis=0) - origin).max())
    if not math.isfinite(size):
        raise DrawingError("the drawing spans more than a float can hold")
    result, budget = [], MAX_RESAMPLED_POINTS  # points left for the drawing's other strokes
    for stroke in strokes:
        # (p - min) * 255 / size in this order: the rounding decides RDP's ties as Google's did.
        with np.errstate(over="ignore"):
            scaled = (stroke - origin) * SIMPLIFIED_SIZE / size if size > 0 else stroke - origin
        if not np.all(np.isfinite(scaled)):  # overflowed: only for spans near the float limit
            scaled = (stroke - origin) / size * SIMPLIFIED_SIZE
        resampled = resample(scaled, max_points=budget)
        budget -= len(resampled)
        simplified = rdp(resampled, RDP_EPSILON)
        pixels = np.round(simplified).astype(int)  # halves to even, as Google's files show
        result.append([pixels[:, 0].tolist(), pixels[:, 1].tolist()])
    return result


def drawing_to_stroke3(drawing: list) -> np.ndarray:
    """stroke-3 (float32) of simplified-format strokes [[x...], [y...]]; raises DrawingError."""
    return polylines_to_stroke3(_strokes(drawing, rows=(2,)))


def check_regular_file(path: Path) -> None:
    """Raise DataFileError unless `path` is a regular file: a FIFO would block a reader and a
    device such as /dev/zero never ends."""
    try:
        path.stat()
    except OSError as err:
        raise DataFileError(f"cannot read {path}: {err.strerror or err}") from None
    if not path.is_file():
        raise DataFileError(f"{path} is not a file")


def bounded_lines(handle: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines of a binary file, with None in place of each line over `limit` bytes (its
    newline not counted), which is read past in pieces and never held whole."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(64 * 1024)
        yield None


def _simplified_line(line: bytes) -> str | None:
    """The simplified ndjson line of one raw ndjson line, or None when the line is malformed."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not all(field in record for field in SIMPLIFIED_FIELDS):
        return None
    try:
        drawing = preprocess_raw_drawing(record["drawing"])
    except SketchError:
        return None
    simplified = {field: record[field] for field in SIMPLIFIED_FIELDS} | {"drawing": drawing}
    try:
        return json.dumps(simplified, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity in one of the other fields
        return None


def simplify_ndjson(src: Path, dst: Path, max_line_bytes: int = MAX_LINE_BYTES) -> dict:
    """Write Google's simplified ndjson for the raw ndjson file `src` to `dst`.

    Each line keeps Google's fields in their order; lines that are not JSON objects with those
    fields and a usable drawing are skipped, as are lines over `max_line_bytes`. Blank lines
    are ignored. Returns the counts
    {"read": ..., "written": ..., "skipped": ...}. `dst` is replaced only once it is complete.
    Raises DataFileError when a file cannot be read or written.
    """
    src, dst = Path(src), Path(dst)
    check_regular_file(src)
    check_output_path(dst, error=DataFileError)
    partial = dst.with_name(dst.name + ".partial")
    counts = {"read": 0, "written": 0, "skipped": 0}
    try:
        partial.unlink(missing_ok=True)  # a new file: a link left there is not followed
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with (open(src, "rb") as lines,
              open(os.open(partial, flags, 0o644), "w", encoding="utf-8") as out):
            for line in bounded_lines(lines, max_line_bytes):
                if line is not None and not line.strip():
                    continue
                counts["read"] += 1
                simplified = None if line is None else _simplified_line(line)
                if simplified is None:
                    counts["skipped"] += 1
                    continue
                out.write(simplified + "\n")
                counts["written"] += 1
        os.replace(partial, dst)
    except BaseException as err:  # a stop too: no .partial is left behind
        partial.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise DataFileError(f"cannot simplify {src} into {dst}: "
                                f"{err.strerror or err}") from None
        raise
    return counts
