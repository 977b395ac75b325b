"""Render stroke-3 drawings as SVG, PNG, Plotly figures and grids, and save or load them.

Coordinates: stroke-3 offsets accumulate from the origin and y grows downwards, as on a
canvas. A drawing is scaled uniformly to fit a square and centred in it. Passing the same
`bounds` (see `drawing_bounds`) for every frame of a replay keeps the scale and offset fixed
while `strokes[:k]` grows.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from .errors import DrawingError
from .strokes import as_stroke3

if TYPE_CHECKING:  # plotly is imported where a figure is made: training runs need no plotly
    import plotly.graph_objects as go

Bounds = tuple[float, float, float, float]

_SUPERSAMPLE = 4  # PNGs are drawn at this multiple of their size, then downsampled
_LABEL_FRACTION = 0.14  # a grid label's band height, as a fraction of the cell size


@dataclasses.dataclass(frozen=True)
class _Style:
    """Drawing options shared by every renderer."""

    margin: float
    stroke_width: float
    color: str
    highlight_rows: int
    highlight_color: str
    background: str

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin is a fraction of the size in [0, 0.5), not {self.margin}")
        if not self.stroke_width > 0:
            raise ValueError(f"stroke_width must be positive, not {self.stroke_width}")
        if not isinstance(self.highlight_rows, (int, np.integer)) or self.highlight_rows < 0:
            raise ValueError(f"highlight_rows must be an integer >= 0, not {self.highlight_rows!r}")


@dataclasses.dataclass(frozen=True)
class _Fit:
    """A uniform scale and offset from drawing coordinates to pixels.

    (xmin, ymin) lands at (left, top); a drawing with no extent is a point at (left, top).
    """

    xmin: float
    ymin: float
    half_extent: float
    left: float
    top: float
    available: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates of absolute (x, y) points."""
        if self.half_extent == 0:
            return np.tile([self.left, self.top], (len(points), 1))
        # Halving before subtracting and dividing before multiplying keep huge and tiny
        # drawings finite.
        unit = (points / 2 - [self.xmin / 2, self.ymin / 2]) / self.half_extent
        return unit * self.available + [self.left, self.top]


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, not {size!r}")
    return int(size)


def _absolute_points(s3: np.ndarray) -> np.ndarray:
    # float64: a float32 cumulative sum of huge offsets can overflow to infinity.
    return np.cumsum(s3[:, 0:2].astype(np.float64), axis=0)


def drawing_bounds(strokes: np.ndarray | list) -> Bounds:
    """(xmin, ymin, xmax, ymax) of a drawing's absolute points; (0, 0, 0, 0) when empty."""
    points = _absolute_points(as_stroke3(strokes))
    if len(points) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
    return (float(xmin), float(ymin), float(xmax), float(ymax))


def _check_bounds(bounds: Sequence[float]) -> Bounds:
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be four numbers (xmin, ymin, xmax, ymax), not {bounds!r}") from None
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)) or xmin > xmax or ymin > ymax:
        raise ValueError(f"bounds must be finite with xmin <= xmax and ymin <= ymax, not {bounds!r}")
    return (xmin, ymin, xmax, ymax)


def _half_sizes(bounds: Bounds) -> tuple[float, float]:
    """Half the width and height of `bounds`; halves cannot overflow where the full size can."""
    xmin, ymin, xmax, ymax = bounds
    return xmax / 2 - xmin / 2, ymax / 2 - ymin / 2


def _fit(bounds: Bounds, size: int, margin: float, origin: tuple[float, float]) -> _Fit:
    """The uniform scale and centring of `bounds` in a size x size cell at `origin`."""
    left, top = origin
    half_w, half_h = _half_sizes(bounds)
    half_extent = max(half_w, half_h)
    available = size * (1 - 2 * margin)
    if half_extent == 0:
        return _Fit(bounds[0], bounds[1], 0.0, left + size / 2, top + size / 2, available)
    pad_x = (1 - half_w / half_extent) * available / 2
    pad_y = (1 - half_h / half_extent) * available / 2
    inset = size * margin
    return _Fit(bounds[0], bounds[1], half_extent, left + inset + pad_x, top + inset + pad_y, available)


def _stroke_ranges(s3: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) point indices of each stroke; a trailing open stroke is kept."""
    ends = list(np.flatnonzero(s3[:, 2] == 1) + 1)
    if not ends or ends[-1] != len(s3):
        ends.append(len(s3))
    starts = [0, *ends[:-1]]
    return [(a, b) for a, b in zip(starts, ends) if b > a]


def _colored_runs(s3: np.ndarray, highlight_rows: int) -> list[tuple[int, int, bool]]:
    """(start, end, highlighted) point runs; a stroke crossing the boundary shares one point."""
    runs = []
    for start, end in _stroke_ranges(s3):
        if end <= highlight_rows:
            runs.append((start, end, True))
        elif start >= highlight_rows:
            runs.append((start, end, False))
        else:
            runs.append((start, highlight_rows, True))
            runs.append((highlight_rows - 1, end, False))
    return runs


def _segments(
    strokes: np.ndarray | list,
    bounds: Sequence[float] | None,
    size: int,
    style: _Style,
    origin: tuple[float, float] = (0.0, 0.0),
) -> list[tuple[np.ndarray, str]]:
    """Pixel polylines with their colours, fitted into the size x size square at `origin`."""
    s3 = as_stroke3(strokes)
    box = drawing_bounds(s3) if bounds is None else _check_bounds(bounds)
    pixels = _fit(box, size, style.margin, origin).apply(_absolute_points(s3))
    return [
        (pixels[a:b], style.highlight_color if lit else style.color)
        for a, b, lit in _colored_runs(s3, style.highlight_rows)
    ]


def _svg_polyline(points: np.ndarray, color: str) -> str:
    if len(points) == 1:
        points = np.vstack([points, points])  # a zero-length line with round caps shows a dot
    coords = " ".join(f"{x:.2f},{y:.2f}" for x, y in points)
    return f"<polyline points={quoteattr(coords)} stroke={quoteattr(color)}/>"


def _svg_document(width: int, height: int, style: _Style, body: list[str]) -> str:
    lines_group = (
        f'<g fill="none" stroke-width="{style.stroke_width:g}" '
        'stroke-linecap="round" stroke-linejoin="round">'
    )
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">',
            f'<rect width="100%" height="100%" fill={quoteattr(style.background)}/>',
            lines_group,
            *body,
            "</g>",
            "</svg>",
        ]
    )


def to_svg(
    strokes: np.ndarray | list,
    *,
    size: int = 256,
    margin: float = 0.05,
    stroke_width: float = 2.0,
    color: str = "#222",
    highlight_rows: int = 0,
    highlight_color: str = "#d62728",
    background: str = "white",
    bounds: Sequence[float] | None = None,
) -> str:
    """One drawing as SVG text in a size x size square.

    `margin` is the fraction of `size` left blank on each side. The first `highlight_rows`
    rows are drawn in `highlight_color`. `bounds` (xmin, ymin, xmax, ymax) replaces the
    drawing's own bounds, to keep the geometry fixed while replaying `strokes[:k]`.
    """
    size = _check_size(size)
    style = _Style(margin, stroke_width, color, highlight_rows, highlight_color, background)
    body = [_svg_polyline(points, c) for points, c in _segments(strokes, bounds, size, style)]
    return _svg_document(size, size, style, body)


def _draw_polyline(draw: ImageDraw.ImageDraw, points: np.ndarray, color: str, width: float) -> None:
    """A polyline with round caps and joins: line segments plus a disc at every point."""
    coords = [(float(x), float(y)) for x, y in points]
    for a, b in zip(coords, coords[1:]):
        # Pillow's wide lines land a pixel apart depending on direction; fix the direction.
        draw.line(sorted([a, b]), fill=color, width=max(1, round(width)))
    # Pillow's ellipse box includes its far edge, hence the half-pixel inset.
    radius = max(0.0, width / 2 - 0.5)
    for x, y in coords:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)


def _png_cell(
    strokes: np.ndarray | list, size: int, bounds: Sequence[float] | None, style: _Style
) -> Image.Image:
    """One drawing as an antialiased RGB image of size x size pixels."""
    factor = _SUPERSAMPLE
    big = Image.new("RGB", (size * factor, size * factor), ImageColor.getrgb(style.background))
    draw = ImageDraw.Draw(big)
    for points, color in _segments(strokes, bounds, size, style):
        # Pillow puts integer coordinates at pixel centres; SVG puts them at pixel corners.
        _draw_polyline(draw, points * factor - 0.5, color, style.stroke_width * factor)
    return big.resize((size, size), Image.Resampling.BOX)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_png(
    strokes: np.ndarray | list,
    *,
    size: int = 256,
    margin: float = 0.05,
    stroke_width: float = 2.0,
    color: str = "#222",
    highlight_rows: int = 0,
    highlight_color: str = "#d62728",
    background: str = "white",
    bounds: Sequence[float] | None = None,
) -> bytes:
    """One drawing as PNG bytes, antialiased, with the same geometry as `to_svg`."""
    size = _check_size(size)
    style = _Style(margin, stroke_width, color, highlight_rows, highlight_color, background)
    return _png_bytes(_png_cell(strokes, size, bounds, style))


def _plotly_range(low: float, high: float, half_extent: float, margin: float) -> list[float]:
    """An axis range centred on [low, high] spanning the margined square of `half_extent`."""
    centre = low / 2 + high / 2
    half = half_extent / (1 - 2 * margin) if half_extent > 0 else 1.0
    return [centre - half, centre + half]


def _plotly_trace(points: list[np.ndarray], color: str, width: float) -> go.Scatter:
    import plotly.graph_objects as go

    """All polylines of one colour as a single trace, separated by gaps."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for line in points:
        xs += [*line[:, 0].tolist(), None]
        ys += [*line[:, 1].tolist(), None]
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines",
        line={"color": color, "width": width},
        connectgaps=False,
        hoverinfo="skip",
        showlegend=False,
    )


def to_plotly(
    strokes: np.ndarray | list,
    *,
    size: int = 256,
    margin: float = 0.05,
    stroke_width: float = 2.0,
    color: str = "#222",
    highlight_rows: int = 0,
    highlight_color: str = "#d62728",
    background: str = "white",
    bounds: Sequence[float] | None = None,
) -> go.Figure:
    """One drawing as a Plotly figure: y pointing down, equal aspect, no axes, no hover."""
    import plotly.graph_objects as go

    size = _check_size(size)
    style = _Style(margin, stroke_width, color, highlight_rows, highlight_color, background)
    s3 = as_stroke3(strokes)
    box = drawing_bounds(s3) if bounds is None else _check_bounds(bounds)
    points = _absolute_points(s3)
    by_color: dict[str, list[np.ndarray]] = {}
    for a, b, lit in _colored_runs(s3, style.highlight_rows):
        by_color.setdefault(style.highlight_color if lit else style.color, []).append(points[a:b])
    half_extent = max(_half_sizes(box))
    axis = {"visible": False, "showgrid": False, "zeroline": False, "fixedrange": True}
    figure = go.Figure([_plotly_trace(lines, c, style.stroke_width) for c, lines in by_color.items()])
    figure.update_layout(
        width=size,
        height=size,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        paper_bgcolor=style.background,
        plot_bgcolor=style.background,
        hovermode=False,
        dragmode=False,
        xaxis={**axis, "range": _plotly_range(box[0], box[2], half_extent, style.margin)},
        # A reversed range makes y grow downwards, as on a canvas.
        yaxis={
            **axis,
            "range": _plotly_range(box[1], box[3], half_extent, style.margin)[::-1],
            "scaleanchor": "x",
        },
    )
    return figure


class _Grid(NamedTuple):
    """Where each drawing of a grid goes: `columns` x `rows` cells, each with a label band."""

    columns: int
    rows: int
    cell: int
    band: int

    @property
    def size(self) -> tuple[int, int]:
        return self.columns * self.cell, self.rows * (self.cell + self.band)

    def corner(self, index: int) -> tuple[int, int]:
        """(left, top) of drawing `index`'s cell."""
        return (index % self.columns) * self.cell, (index // self.columns) * (self.cell + self.band)


def _grid(drawings: Sequence, columns: int, cell: int, labels: Sequence[str] | None) -> _Grid:
    """The grid for `drawings`; checks the arguments."""
    cell = _check_size(cell)
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be a positive integer, not {columns!r}")
    if len(drawings) == 0:
        raise DrawingError("there are no drawings to lay out in a grid")
    if labels is not None and len(labels) != len(drawings):
        raise ValueError(f"{len(labels)} labels for {len(drawings)} drawings")
    used = min(int(columns), len(drawings))
    band = 0 if labels is None else max(10, round(cell * _LABEL_FRACTION))
    return _Grid(used, math.ceil(len(drawings) / used), cell, band)


def grid_svg(
    drawings: Sequence[np.ndarray | list],
    columns: int,
    *,
    cell: int = 128,
    labels: Sequence[str] | None = None,
    margin: float = 0.05,
    stroke_width: float = 2.0,
    color: str = "#222",
    highlight_rows: int = 0,
    highlight_color: str = "#d62728",
    background: str = "white",
) -> str:
    """Several drawings as one SVG, `columns` per row, each in a cell x cell square.

    `highlight_rows` applies to every drawing. With `labels`, each cell gets a band of small
    text below it.
    """
    grid = _grid(drawings, columns, cell, labels)
    style = _Style(margin, stroke_width, color, highlight_rows, highlight_color, background)
    body = []
    for i, strokes in enumerate(drawings):
        segments = _segments(strokes, None, grid.cell, style, grid.corner(i))
        body += [_svg_polyline(p, c) for p, c in segments]
    if labels is not None:
        body += [_svg_label(text, grid, i, color) for i, text in enumerate(labels)]
    return _svg_document(*grid.size, style, body)


def _svg_label(text: str, grid: _Grid, index: int, color: str) -> str:
    left, top = grid.corner(index)
    x, y = left + 0.5 * grid.cell, top + grid.cell + grid.band * 0.75
    return (
        f'<text x="{x:.2f}" y="{y:.2f}" font-size="{grid.band * 0.7:.1f}" font-family="sans-serif" '
        f'text-anchor="middle" fill={quoteattr(color)}>{escape(str(text))}</text>'
    )


def grid_png(
    drawings: Sequence[np.ndarray | list],
    columns: int,
    *,
    cell: int = 128,
    labels: Sequence[str] | None = None,
    margin: float = 0.05,
    stroke_width: float = 2.0,
    color: str = "#222",
    highlight_rows: int = 0,
    highlight_color: str = "#d62728",
    background: str = "white",
) -> bytes:
    """Several drawings as one PNG, laid out as `grid_svg` lays them out."""
    grid = _grid(drawings, columns, cell, labels)
    style = _Style(margin, stroke_width, color, highlight_rows, highlight_color, background)
    sheet = Image.new("RGB", grid.size, ImageColor.getrgb(background))
    for i, strokes in enumerate(drawings):
        sheet.paste(_png_cell(strokes, grid.cell, None, style), grid.corner(i))
    if labels is not None:
        draw = ImageDraw.Draw(sheet)
        font = ImageFont.load_default(size=grid.band * 0.7)
        for i, text in enumerate(labels):
            left, top = grid.corner(i)
            center = (left + 0.5 * grid.cell, top + grid.cell + grid.band / 2)
            draw.text(center, str(text), fill=color, font=font, anchor="mm")
    return _png_bytes(sheet)


def _drawings_to_json(drawings: Sequence[np.ndarray | list]) -> str:
    rows = [[[float(dx), float(dy), int(pen)] for dx, dy, pen in as_stroke3(d)] for d in drawings]
    return json.dumps(rows)


def save_drawings(
    path: str | os.PathLike, drawings: Sequence[np.ndarray | list], *, columns: int | None = None
) -> None:
    """Write drawings by the path's extension: .svg or .png (a grid) or .json (stroke-3 lists).

    `columns` defaults to a near-square grid. Other extensions raise ValueError.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".json":
        target.write_text(_drawings_to_json(drawings), encoding="utf-8")
        return
    if suffix not in (".svg", ".png"):
        raise ValueError(f"cannot save drawings as {target.name!r}: use a .svg, .png or .json file")
    columns = columns if columns is not None else max(1, math.ceil(math.sqrt(len(drawings))))
    if suffix == ".svg":
        target.write_text(grid_svg(drawings, columns), encoding="utf-8")
    else:
        target.write_bytes(grid_png(drawings, columns))


def load_drawings_json(path: str | os.PathLike) -> list[np.ndarray]:
    """Read drawings written by `save_drawings(... .json)`; raises DrawingError on bad content."""
    try:
        content = json.loads(Path(path).read_bytes())
    except OSError as err:
        raise DrawingError(f"cannot read drawings from {path}: {err}") from None
    except (ValueError, RecursionError) as err:
        raise DrawingError(f"{path} is not a JSON file of drawings: {err}") from None
    if not isinstance(content, list):
        raise DrawingError(f"{path} must hold a JSON list of drawings, not {type(content).__name__}")
    drawings = []
    for i, item in enumerate(content):
        try:
            drawings.append(as_stroke3(item))
        except DrawingError as err:
            raise DrawingError(f"drawing {i} in {path}: {err}") from None
    return drawings
