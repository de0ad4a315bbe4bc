"""Scene backgrounds: a partition of the image into stuff regions, each with its own texture.

Every pixel belongs to exactly one region (horizontal bands with wavy borders, then
mountains and clouds carved out of the sky), so stuff concepts never overlap each other.
"""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np

from conceptmask_tf.data.world import raster
from conceptmask_tf.data.world.ontology import SceneType
from conceptmask_tf.data.world.sprites import jitter

MOUNTAIN_PROB = types.MappingProxyType(
    {"city": 0.1, "park": 0.3, "beach": 0.15, "lake": 0.5, "winter": 0.5})
CLOUD_PROB = 0.6
WALL_COLOURS = ((0.88, 0.84, 0.74), (0.72, 0.80, 0.88), (0.80, 0.88, 0.78),
                (0.90, 0.78, 0.80), (0.76, 0.76, 0.76))
CARPETS = ((0.55, 0.18, 0.18), (0.2, 0.3, 0.55), (0.3, 0.45, 0.3), (0.5, 0.5, 0.5))


@dataclasses.dataclass(frozen=True)
class Background:
    """A scene's stuff layout and colours.

    Attributes:
        regions: Stuff concept of each region (a region is one stuff instance).
        labels: [S, S] int16 region index of every pixel.
        rgb: [S, S, 3] float32 colours in [0, 1].
        horizon: Row where the ground starts (reference for perspective).
    """

    regions: tuple[str, ...]
    labels: np.ndarray
    rgb: np.ndarray
    horizon: float


def make_background(scene: SceneType, size: int, rng: np.random.Generator, night: bool,
                    require: str | None = None) -> Background:
    """Lays out and paints the background of a scene.

    Args:
        scene: The scene type.
        size: Image side in pixels.
        rng: Random generator.
        night: Whether the scene is at night (dark sky).
        require: A stuff concept that must be present (optional elements are forced on).

    Returns:
        The Background.
    """
    if require is not None and require not in scene.stuff:
        raise ValueError(f"scene {scene.name!r} cannot contain {require!r}")
    regions, labels, horizon = _bands(scene.name, size, rng, require)
    if "sky" in regions:
        sky = regions.index("sky")
        if rng.random() < MOUNTAIN_PROB.get(scene.name, 0.0) or require == "mountain":
            ridge = _ridge(rng, size, horizon)
            carved = (labels == sky) & (np.arange(size)[:, None] >= ridge[None, :])
            regions, labels = _add_region(regions, labels, "mountain", carved)
        if rng.random() < (CLOUD_PROB * (0.5 if night else 1.0)) or require == "cloud":
            for _ in range(int(rng.integers(1, 4))):
                carved = _cloud(rng, size, horizon) & (labels == sky)
                regions, labels = _add_region(regions, labels, "cloud", carved)
    regions, labels = _drop_empty(regions, labels)
    rgb = np.zeros((size, size, 3), np.float32)
    painters = {"sky": _sky, "cloud": _cloud_paint, "mountain": _mountain, "grass": _grass,
                "sand": _sand, "snow": _snow, "road": _road, "water": _water, "wall": _wall,
                "floor": _floor}
    for index, stuff in enumerate(regions):
        mask = labels == index
        rgb[mask] = painters[stuff](rng, size, mask, horizon, night)[mask]
    return Background(tuple(regions), labels, rgb, horizon)


def _bands(scene: str, size: int, rng: np.random.Generator,
           require: str | None) -> tuple[list[str], np.ndarray, float]:
    """Horizontal bands top to bottom: (stuff names, [S, S] labels, horizon row)."""
    s = float(size)
    horizon = rng.uniform(0.3, 0.52) * s
    bands: list[tuple[str, np.ndarray | None]] = []

    def wavy(base: float, amp: float, cycles: float = 1.5) -> np.ndarray:
        return _profile(rng, size, base, amp * s, cycles)

    if scene == "indoor":
        floor_top = rng.uniform(0.45, 0.7) * s
        slope = rng.uniform(-0.1, 0.1)
        bands = [("wall", None),
                 ("floor", floor_top + slope * (np.arange(size) - s / 2))]
        horizon = floor_top
    elif scene == "city":
        bands = [("sky", None)]
        if rng.random() < 0.45 or require == "grass":
            bands.append(("grass", wavy(horizon, 0.01)))
            bands.append(("road", wavy(horizon + rng.uniform(0.06, 0.15) * s, 0.005)))
        else:
            bands.append(("road", wavy(horizon, 0.005)))
    elif scene == "park":
        bands = [("sky", None), ("grass", wavy(horizon, 0.025))]
        if rng.random() < 0.2 or require == "road":
            bands.append(("road", wavy(rng.uniform(0.78, 0.9) * s, 0.01)))
    elif scene == "beach":
        bands = [("sky", None), ("water", wavy(horizon, 0.0)),
                 ("sand", wavy(horizon + rng.uniform(0.12, 0.35) * s, 0.03, 2.5))]
    elif scene == "lake":
        bands = [("sky", None)]
        if rng.random() < 0.4:
            bands.append(("grass", wavy(horizon, 0.01)))
            bands.append(("water", wavy(horizon + rng.uniform(0.03, 0.07) * s, 0.003)))
        else:
            bands.append(("water", wavy(horizon, 0.0)))
        if rng.random() < 0.7 or require == "grass":
            bands.append(("grass", wavy(rng.uniform(0.72, 0.9) * s, 0.03, 2.0)))
    elif scene == "winter":
        bands = [("sky", None), ("snow", wavy(horizon, 0.025))]
        if rng.random() < 0.3 or require == "road":
            bands.append(("road", wavy(rng.uniform(0.75, 0.9) * s, 0.01)))
    else:
        raise ValueError(f"no background layout for scene {scene!r}")
    labels = np.zeros((size, size), np.int16)
    rows = np.arange(size, dtype=np.float32)[:, None]  # [S, 1]
    for index, (_, top) in enumerate(bands):
        if top is not None:
            labels[rows >= top[None, :]] = index
    return [name for name, _ in bands], labels, float(horizon)


def _profile(rng: np.random.Generator, size: int, base: float, amp: float,
             cycles: float) -> np.ndarray:
    """[S] boundary rows: base + a sine of random phase + a little smooth noise."""
    x = np.arange(size, dtype=np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin(2 * math.pi * cycles * x / size + phase)
    wobble = raster.smooth_noise(rng, (1, size), max(size / 8.0, 2.0))[0]
    return (base + amp * (wave + 0.4 * wobble)).astype(np.float32)


def _ridge(rng: np.random.Generator, size: int, horizon: float) -> np.ndarray:
    """[S] top rows of a mountain range standing on the horizon."""
    height = rng.uniform(0.08, 0.25) * size
    noise = raster.smooth_noise(rng, (1, size), size / rng.uniform(2.0, 5.0))[0]
    peaks = np.abs(noise)  # sharp valleys, rounded peaks
    return (horizon - height * (0.35 + 0.65 * np.clip(peaks, 0, 1.5) / 1.5)).astype(np.float32)


def _cloud(rng: np.random.Generator, size: int, horizon: float) -> np.ndarray:
    """[S, S] bool: a cluster of overlapping ellipses in the upper sky."""
    s = float(size)
    width = rng.uniform(0.12, 0.32) * s
    cx = rng.uniform(0.0, s)
    cy = rng.uniform(0.05 * s, max(0.06 * s, horizon - 0.12 * s))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    out = np.zeros((size, size), bool)
    puffs = int(rng.integers(3, 5))
    for i in range(puffs):
        px = cx + (i / (puffs - 1) - 0.5) * width * 0.7
        py = cy + rng.uniform(-0.08, 0.05) * width
        rx = width * rng.uniform(0.18, 0.3)
        ry = rx * rng.uniform(0.55, 0.8)
        out |= ((xx - px) / rx) ** 2 + ((yy - py) / ry) ** 2 <= 1.0
    return out


def _add_region(regions: list[str], labels: np.ndarray, name: str,
                mask: np.ndarray) -> tuple[list[str], np.ndarray]:
    if not mask.any():
        return regions, labels
    labels = labels.copy()
    labels[mask] = len(regions)
    return regions + [name], labels


def _drop_empty(regions: list[str], labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Removes regions with no pixel and renumbers the others in order."""
    counts = np.bincount(labels.ravel(), minlength=len(regions))
    keep = [i for i in range(len(regions)) if counts[i] > 0]
    remap = np.full(len(regions), -1, np.int16)
    remap[keep] = np.arange(len(keep), dtype=np.int16)
    return [regions[i] for i in keep], remap[labels]


# ---------------------------------------------------------------------------------------------
# Textures: each returns [S, S, 3] colours; only the region's pixels are used.


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _fill(size: int, rgb: tuple[float, float, float]) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.float32), (size, size, 3)).copy()


def _sky(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
         night: bool) -> np.ndarray:
    yy, _ = _grid(size)
    if night:
        top, bottom = jitter((0.02, 0.03, 0.10), rng, 0.01), jitter((0.10, 0.12, 0.28), rng, 0.02)
    else:
        top, bottom = jitter((0.25, 0.48, 0.88), rng, 0.04), jitter((0.68, 0.82, 0.96), rng, 0.03)
    t = np.clip(yy / max(horizon, 1.0), 0, 1)[..., None]
    out = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    if night:
        stars = rng.random((size, size)) < 0.004
        out[stars] = (0.9, 0.9, 0.8)
    return out


def _cloud_paint(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
                 night: bool) -> np.ndarray:
    yy, _ = _grid(size)
    rows = np.nonzero(mask.any(axis=1))[0]
    t = (yy - rows.min()) / max(rows.max() - rows.min(), 1)
    base = 0.38 if night else rng.uniform(0.9, 1.0)
    grey = base * (1.0 - 0.2 * t) + 0.03 * raster.smooth_noise(rng, (size, size), 3.0)
    return np.repeat(grey[..., None], 3, axis=2) * np.asarray((0.98, 0.99, 1.0), np.float32)


def _mountain(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
              night: bool) -> np.ndarray:
    yy, _ = _grid(size)
    palette = ((0.42, 0.45, 0.55), (0.45, 0.40, 0.38), (0.35, 0.42, 0.38))
    base = np.asarray(jitter(palette[rng.integers(len(palette))], rng, 0.03), np.float32)
    rows = np.nonzero(mask.any(axis=1))[0]
    t = ((yy - rows.min()) / max(rows.max() - rows.min(), 1))[..., None]
    out = base * (1.05 - 0.25 * t) * (1 + 0.06 * raster.smooth_noise(rng, (size, size), 4.0))[
        ..., None]
    if rng.random() < 0.5:
        out[(t[..., 0] < rng.uniform(0.15, 0.35))] = (0.92, 0.93, 0.96)
    return out


def _grass(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
           night: bool) -> np.ndarray:
    palette = ((0.25, 0.55, 0.18), (0.42, 0.58, 0.2), (0.15, 0.42, 0.12))
    base = np.asarray(jitter(palette[rng.integers(len(palette))], rng, 0.03), np.float32)
    blades = np.repeat(rng.standard_normal((size // 3 + 1, size)), 3, axis=0)[:size]
    light = (1 + 0.1 * rng.standard_normal((size, size)) + 0.07 * blades
             + 0.08 * raster.smooth_noise(rng, (size, size), 6.0))
    return base * light[..., None].astype(np.float32)


def _sand(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
          night: bool) -> np.ndarray:
    yy, _ = _grid(size)
    base = np.asarray(jitter((0.86, 0.77, 0.55), rng, 0.03), np.float32)
    ripples = np.sin(yy * rng.uniform(0.6, 1.2) + 3 * raster.smooth_noise(rng, (size, size), 8.0))
    light = 1 + 0.05 * rng.standard_normal((size, size)) + 0.03 * ripples
    return base * light[..., None].astype(np.float32)


def _snow(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
          night: bool) -> np.ndarray:
    base = np.asarray(jitter((0.93, 0.95, 0.99), rng, 0.01), np.float32)
    shadow = np.clip(raster.smooth_noise(rng, (size, size), 7.0), 0, None)[..., None]
    out = base - 0.08 * shadow * np.asarray((1.0, 0.8, 0.2), np.float32)
    out += 0.02 * rng.standard_normal((size, size, 1)).astype(np.float32)
    return out


def _water(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
           night: bool) -> np.ndarray:
    yy, xx = _grid(size)
    palette = ((0.12, 0.36, 0.58), (0.08, 0.42, 0.5), (0.1, 0.25, 0.5))
    base = np.asarray(jitter(palette[rng.integers(len(palette))], rng, 0.03), np.float32)
    period = rng.uniform(3.0, 6.0)
    phase = 2.5 * raster.smooth_noise(rng, (size, size), 6.0) + xx * 0.05
    wave = np.sin(2 * math.pi * yy / period + phase)
    light = 1 + 0.1 * wave + 0.25 * (wave > 0.92)
    depth = 1.1 - 0.2 * np.clip((yy - horizon) / size, 0, 1)
    return base * (light * depth)[..., None].astype(np.float32)


def _road(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
          night: bool) -> np.ndarray:
    yy, xx = _grid(size)
    grey = rng.uniform(0.28, 0.4)
    out = _fill(size, (grey, grey, grey * 1.04))
    out *= (1 + 0.08 * rng.standard_normal((size, size)))[..., None].astype(np.float32)
    rows = np.nonzero(mask.any(axis=1))[0]
    centre = (rows.min() + rows.max()) / 2.0
    thick = max(1.0, size / 64.0)
    dash = rng.uniform(0.06, 0.12) * size
    on = (np.abs(yy + 0.5 - centre) <= thick / 2 + 0.01) & ((xx // dash) % 2 == 0)
    out[on] = (0.95, 0.95, 0.9) if rng.random() < 0.6 else (0.95, 0.8, 0.15)
    return out


def _wall(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
          night: bool) -> np.ndarray:
    yy, xx = _grid(size)
    base = jitter(WALL_COLOURS[rng.integers(len(WALL_COLOURS))], rng, 0.02)
    out = _fill(size, base) * (1 + 0.02 * rng.standard_normal((size, size, 1))).astype(
        np.float32)
    if rng.random() < 0.35:  # wallpaper
        period = rng.uniform(4.0, 8.0)
        out *= (1 - 0.06 * raster.stripes(xx, yy, period, 0.0))[..., None]
    if rng.random() < 0.3:  # a picture on the wall (still wall pixels)
        w, h = rng.uniform(0.12, 0.25) * size, rng.uniform(0.1, 0.2) * size
        x0, y0 = rng.uniform(0.05, 0.8) * size, rng.uniform(0.05, 0.25) * size
        frame = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
        inner = (xx >= x0 + 1.5) & (xx < x0 + w - 1.5) & (yy >= y0 + 1.5) & (yy < y0 + h - 1.5)
        out[frame] = (0.3, 0.2, 0.1)
        out[inner] = jitter((0.5, 0.6, 0.5), rng, 0.15)
    return out


def _floor(rng: np.random.Generator, size: int, mask: np.ndarray, horizon: float,
           night: bool) -> np.ndarray:
    yy, xx = _grid(size)
    kind = rng.random()
    if kind < 0.5:  # wooden planks
        base = np.asarray(jitter((0.55, 0.38, 0.22), rng, 0.03), np.float32)
        plank = rng.uniform(3.0, 6.0)
        grain = np.repeat(rng.standard_normal((size, size // 4 + 1)), 4, axis=1)[:, :size]
        light = 1 + 0.06 * grain - 0.25 * ((yy % plank) < 1.0)
        return base * light[..., None].astype(np.float32)
    if kind < 0.75:  # tiles
        period = rng.uniform(6.0, 10.0)
        a = np.asarray(jitter((0.8, 0.78, 0.72), rng, 0.03), np.float32)
        b = np.asarray(jitter((0.55, 0.55, 0.55), rng, 0.03), np.float32)
        checker = (((xx // period) + (yy // period)) % 2 == 0)[..., None]
        return np.where(checker, a, b)
    base = np.asarray(jitter(CARPETS[rng.integers(len(CARPETS))], rng, 0.03), np.float32)
    return base * (1 + 0.07 * rng.standard_normal((size, size, 1))).astype(np.float32)
