"""Vectorised rasterisation: shapes in an object's local frame, textures and smooth noise.

A shape is evaluated at pixel centres, so a mask is exactly the set of pixels the image
paints: image and masks can never disagree.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Frame:
    """Local coordinates of the pixels of one object's window.

    An object lives in the box [left, left + width] x [top, top + height] (pixels, float);
    local u runs 0 -> 1 from its back to its front (mirrored when it faces left) and v runs
    0 -> 1 from top to bottom. Only the part of the box inside the image is evaluated.

    Attributes:
        rows: Slice of image rows covered by the window.
        cols: Slice of image columns covered by the window.
        u: [h, w] float32 local x of each pixel centre.
        v: [h, w] float32 local y of each pixel centre.
        width: Box width in pixels.
        height: Box height in pixels.
        x: [h, w] float32 pixel x relative to the box's left edge (not mirrored).
        y: [h, w] float32 pixel y relative to the box's top edge.
    """

    rows: slice
    cols: slice
    u: np.ndarray
    v: np.ndarray
    width: float
    height: float
    x: np.ndarray
    y: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape  # type: ignore[return-value]


def make_frame(image_size: int, left: float, top: float, width: float, height: float,
               mirrored: bool) -> Frame | None:
    """The frame of a box in a square image, or None if the box misses the image."""
    r0, r1 = max(0, math.floor(top)), min(image_size, math.ceil(top + height))
    c0, c1 = max(0, math.floor(left)), min(image_size, math.ceil(left + width))
    if r0 >= r1 or c0 >= c1:
        return None
    y = (np.arange(r0, r1, dtype=np.float32) + 0.5 - top)[:, None]  # [h, 1]
    x = (np.arange(c0, c1, dtype=np.float32) + 0.5 - left)[None, :]  # [1, w]
    y, x = np.broadcast_arrays(y, x)  # [h, w] each
    u = x / width
    if mirrored:
        u = 1.0 - u
    return Frame(rows=slice(r0, r1), cols=slice(c0, c1), u=u, v=y / height,
                 width=float(width), height=float(height), x=x, y=y)


def ellipse(f: Frame, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
    """Ellipse with centre (cu, cv) and radii (ru, rv) in local units; >= ~1 px radius."""
    ru = max(ru, 0.6 / f.width)
    rv = max(rv, 0.6 / f.height)
    return ((f.u - cu) / ru) ** 2 + ((f.v - cv) / rv) ** 2 <= 1.0


def disc(f: Frame, cu: float, cv: float, r: float) -> np.ndarray:
    """A round disc of radius r given in units of the box height."""
    return ellipse(f, cu, cv, r * f.height / f.width, r)


def rect(f: Frame, u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    """Axis-aligned rectangle in local units, widened to at least one pixel each way."""
    u0, u1 = _at_least_one_pixel(min(u0, u1), max(u0, u1), f.width)
    v0, v1 = _at_least_one_pixel(v0, v1, f.height)
    return (f.u >= u0) & (f.u < u1) & (f.v >= v0) & (f.v < v1)


def polygon(f: Frame, points: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Even-odd fill of a polygon given as (u, v) vertices."""
    inside = np.zeros(f.shape, dtype=bool)
    n = len(points)
    for i in range(n):
        u0, v0 = points[i]
        u1, v1 = points[(i + 1) % n]
        if v0 == v1:
            continue
        crosses = (f.v >= min(v0, v1)) & (f.v < max(v0, v1))
        u_at = u0 + (f.v - v0) * (u1 - u0) / (v1 - v0)
        inside ^= crosses & (f.u < u_at)
    return inside


def segment(f: Frame, p0: tuple[float, float], p1: tuple[float, float],
            thickness: float) -> np.ndarray:
    """A thick line from p0 to p1 (local units); thickness in units of the box height."""
    # Distances in pixels so the line is round whatever the box aspect.
    ax, ay = p0[0] * f.width, p0[1] * f.height
    bx, by = p1[0] * f.width, p1[1] * f.height
    px, py = f.u * f.width, f.v * f.height
    dx, dy = bx - ax, by - ay
    length2 = max(dx * dx + dy * dy, 1e-9)
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / length2, 0.0, 1.0)
    dist2 = (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2
    half = max(thickness * f.height / 2.0, 0.55)
    return dist2 <= half * half


def _at_least_one_pixel(lo: float, hi: float, size_px: float) -> tuple[float, float]:
    min_span = 1.0 / size_px
    if hi - lo >= min_span:
        return lo, hi
    mid = (lo + hi) / 2.0
    return mid - min_span / 2.0, mid + min_span / 2.0


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, unit-ish noise that varies over about `cell` pixels (bilinear lattice)."""
    h, w = shape
    gh, gw = math.ceil(h / cell) + 2, math.ceil(w / cell) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(np.int32), xs.astype(np.int32)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy  # [h, w]


def stripes(x: np.ndarray, y: np.ndarray, period: float, angle: float) -> np.ndarray:
    """Boolean stripe pattern (half of each period on) along direction `angle` (radians)."""
    s = (x * math.cos(angle) + y * math.sin(angle)) / max(period, 2.0)
    return (s - np.floor(s)) < 0.5


def dots(x: np.ndarray, y: np.ndarray, period: float, radius: float) -> np.ndarray:
    """Boolean pattern of round dots on a staggered grid."""
    period = max(period, 3.0)
    row = np.floor(y / period)
    xs = x + (row % 2) * period / 2.0
    dx = xs - (np.floor(xs / period) + 0.5) * period
    dy = y - (row + 0.5) * period
    return dx * dx + dy * dy <= max(radius, 0.7) ** 2
