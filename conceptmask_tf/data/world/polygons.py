"""Binary masks as COCO polygons that pycocotools rasterises back to exactly the same pixels.

A polygon traced along pixel edges (vertices on the pixel-corner lattice) is filled by
pycocotools' `frPyObjects` as exactly the pixels it encloses. Masks with holes cannot be
written as COCO polygons (they are unioned, never subtracted); `mask_to_polygons` returns None
for them and for any mask whose round trip is not exact, and the caller writes RLE instead.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

# Directed boundary edges keep the mask on their right (image coordinates, y down).
_RIGHT_TURN = {(1, 0): (0, 1), (0, 1): (-1, 0), (-1, 0): (0, -1), (0, -1): (1, 0)}


def mask_to_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons ([[x0, y0, x1, y1, ...], ...]) of a mask, or None if not representable.

    Args:
        mask: [H, W] bool, at least one pixel set.

    Returns:
        Polygons whose union rasterises (pycocotools) to exactly `mask`, or None when the
        mask has a hole or the round trip is not exact.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or (ndimage.binary_fill_holes(mask) != mask).any():
        return None
    polygons = [_simplify(loop) for loop in _boundary_loops(mask)]
    flat = [[float(c) for point in loop for c in point] for loop in polygons]
    h, w = mask.shape
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, h, w)))
    if not np.array_equal(decoded.astype(bool), mask):
        return None
    return flat


def _boundary_loops(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Closed loops of pixel-corner vertices around the mask (mask on the right of each edge)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1]
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def add(ys: np.ndarray, xs: np.ndarray, dx: int, dy: int, ox: int, oy: int) -> None:
        for y, x in zip(ys.tolist(), xs.tolist()):
            outgoing.setdefault((x + ox, y + oy), []).append((dx, dy))

    ys, xs = np.nonzero(inner & ~padded[:-2, 1:-1])  # top side: left -> right
    add(ys, xs, 1, 0, 0, 0)
    ys, xs = np.nonzero(inner & ~padded[1:-1, 2:])  # right side: top -> bottom
    add(ys, xs, 0, 1, 1, 0)
    ys, xs = np.nonzero(inner & ~padded[2:, 1:-1])  # bottom side: right -> left
    add(ys, xs, -1, 0, 1, 1)
    ys, xs = np.nonzero(inner & ~padded[1:-1, :-2])  # left side: bottom -> top
    add(ys, xs, 0, -1, 0, 1)
    loops = []
    for start in sorted(outgoing):
        while outgoing.get(start):
            loop = [start]
            vertex, direction = start, outgoing[start].pop(0)
            while True:
                vertex = (vertex[0] + direction[0], vertex[1] + direction[1])
                if vertex == start and not outgoing.get(start):
                    break
                loop.append(vertex)
                options = outgoing[vertex]
                # Where two loops touch at a corner, hug the same pixel (turn right).
                turn = _RIGHT_TURN[direction]
                direction = options.pop(options.index(turn) if turn in options else 0)
            loops.append(loop)
    return loops


def _simplify(loop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drops vertices in the middle of straight runs."""
    n = len(loop)
    keep = []
    for i in range(n):
        (ax, ay), (bx, by), (cx, cy) = loop[i - 1], loop[i], loop[(i + 1) % n]
        if (bx - ax) * (cy - by) - (by - ay) * (cx - bx) != 0:
            keep.append(loop[i])
    return keep
