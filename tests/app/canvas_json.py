"""Fabric.js JSON as streamlit-drawable-canvas sends it, for feeding pages without a browser."""

from __future__ import annotations

import math
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def fabric_path(points: list[tuple[float, float]], stroke_width: float = 3) -> dict:
    """A freedraw `Path` object through `points` (canvas pixels), as Fabric 7's PencilBrush makes
    it in streamlit-drawable-canvas 0.13: absolute path coordinates, origin at the centre."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    commands: list[list] = [["M", *points[0]]]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        commands.append(["Q", x0, y0, (x0 + x1) / 2, (y0 + y1) / 2])
    commands.append(["L", *points[-1]])
    return {
        "type": "Path", "version": "7.4.0", "originX": "center", "originY": "center",
        "left": (min(xs) + max(xs)) / 2, "top": (min(ys) + max(ys)) / 2,
        "width": max(xs) - min(xs), "height": max(ys) - min(ys), "fill": None, "stroke": "#000000",
        "strokeWidth": stroke_width, "strokeLineCap": "round", "strokeLineJoin": "round",
        "scaleX": 1, "scaleY": 1, "angle": 0, "flipX": False, "flipY": False, "opacity": 1,
        "visible": True, "skewX": 0, "skewY": 0, "path": commands,
    }


def canvas(*objects: dict) -> dict:
    return {"version": "7.4.0", "objects": list(objects), "background": "#ffffff"}


def circle_stroke(cx: float = 180, cy: float = 180, r: float = 80, n: int = 40) -> dict:
    return fabric_path([(cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n))
                        for i in range(n + 1)])


def zigzags(strokes: int = 6, corners: int = 80) -> list[dict]:
    """Strokes of sharp corners that RDP cannot simplify: about strokes * corners points."""
    return [fabric_path([(10 + i * 4, 20 + s * 55 + (i % 2) * 40) for i in range(corners)])
            for s in range(strokes)]


def canvas_value(json_data: dict) -> dict:
    """The widget value st_canvas reads back (what the browser component would have sent)."""
    return {"drawing": {"raw": json_data, "data": None}, "backgroundFit": None}
