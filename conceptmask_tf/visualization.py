"""Pictures people would rather look at than read: mask overlays and labelled contact sheets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, colour-blind-friendly colours (Okabe-Ito), RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
    (0, 114, 178), (213, 94, 0), (204, 121, 167), (0, 0, 0),
)


def overlay_masks(image: np.ndarray, masks: Sequence[np.ndarray],
                  colors: Sequence[tuple[int, int, int]] | None = None,
                  alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """Blends binary or soft masks onto an image.

    Args:
        image: [H, W, 3] uint8 RGB.
        masks: each [H, W], bool or float in [0, 1] (soft masks blend proportionally).
        colors: one RGB colour per mask; defaults to `PALETTE`, cycled.
        alpha: opacity of a fully-on mask pixel.
        outline: draw the boundary of each mask (at 0.5) in full colour.

    Returns:
        [H, W, 3] uint8 RGB.
    """
    out = image.astype(np.float32)
    colors = colors or [PALETTE[i % len(PALETTE)] for i in range(len(masks))]
    for mask, color in zip(masks, colors):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
        weight = alpha * np.clip(mask.astype(np.float32), 0.0, 1.0)[..., None]  # [H, W, 1]
        out = out * (1.0 - weight) + np.asarray(color, np.float32) * weight
        if outline:
            binary = mask.astype(np.float32) >= 0.5
            edge = binary & ~_erode(binary)
            out[edge] = color
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def heatmap(values: np.ndarray) -> np.ndarray:
    """Maps a [H, W] array to an RGB heat map (min-max normalised; black-red-yellow-white)."""
    v = values.astype(np.float32)
    span = float(v.max() - v.min())
    v = (v - v.min()) / span if span > 0 else np.zeros_like(v)
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], -1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[Sequence[str]] | None = None,
                  tile_size: int = 160, pad: int = 4) -> Image.Image:
    """Lays out image tiles in a grid, each with an optional caption underneath.

    A caption wider than its tile wraps at spaces onto more lines (a word wider than the
    tile is cut), and every row's caption band is as tall as the sheet's longest caption.

    Args:
        rows: rows of [h, w, 3] uint8 tiles (any size; resized to `tile_size` square).
        captions: same nesting as `rows`.
        tile_size: side of each tile in pixels.
        pad: gap between tiles.

    Returns:
        A PIL image.
    """
    font = ImageFont.load_default()
    wrapped = [[wrap_caption(text, font, tile_size - 4) if text else [] for text in row]
               for row in captions] if captions else None
    lines = max((len(c) for row in wrapped for c in row), default=1) if wrapped else 0
    caption_h = CAPTION_LINE * max(lines, 1) + 2 if captions else 0
    ncols = max(len(r) for r in rows)
    width = ncols * (tile_size + pad) + pad
    height = len(rows) * (tile_size + caption_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            x = pad + c * (tile_size + pad)
            y = pad + r * (tile_size + caption_h + pad)
            img = Image.fromarray(tile).resize((tile_size, tile_size), Image.NEAREST)
            sheet.paste(img, (x, y))
            for i, line in enumerate(wrapped[r][c] if wrapped else []):
                draw.text((x + 2, y + tile_size + 1 + i * CAPTION_LINE), line,
                          fill=(0, 0, 0), font=font)
    return sheet


CAPTION_LINE = 12  # pixels per caption line (PIL's default font is ~11 px tall)


def wrap_caption(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels, broken at spaces."""
    lines: list[str] = []
    for word in text.split():
        while font.getlength(word) > width:  # a word wider than the tile: cut it
            cut = next((i for i in range(len(word) - 1, 0, -1)
                        if font.getlength(word[:i]) <= width), 1)
            lines.append(word[:cut])
            word = word[cut:]
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        elif word:
            lines.append(word)
    return lines


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion with the image border counted as outside."""
    padded = np.pad(mask, 1, constant_values=False)
    out = np.ones_like(mask)
    h, w = mask.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= padded[dy:dy + h, dx:dx + w]
    return out
