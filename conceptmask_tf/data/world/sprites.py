"""Object classes drawn as procedural sprites: lists of coloured components, some of them parts.

Every drawing function works in the object's local frame (`raster.Frame`: u from back to
front, v from top to bottom, both in [0, 1]), so one description serves every size, position
and facing. A component is a boolean mask over the object's window plus how to paint it;
components painted later cover earlier ones, inside an object as between objects.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable

import numpy as np

from conceptmask_tf.data.world import raster
from conceptmask_tf.data.world.ontology import colour_rgb, object_class
from conceptmask_tf.data.world.raster import Frame, disc, ellipse, polygon, rect, segment

Rgb = tuple[float, float, float]

SKIN_TONES: tuple[Rgb, ...] = ((0.96, 0.80, 0.69), (0.87, 0.66, 0.50), (0.68, 0.47, 0.33),
                               (0.45, 0.30, 0.20), (0.98, 0.87, 0.77))
CLOTHES: tuple[Rgb, ...] = ((0.80, 0.15, 0.15), (0.15, 0.30, 0.80), (0.20, 0.60, 0.25),
                            (0.95, 0.80, 0.15), (0.92, 0.92, 0.92), (0.15, 0.15, 0.15),
                            (0.55, 0.25, 0.60), (0.95, 0.55, 0.10), (0.45, 0.75, 0.85))
TROUSERS: tuple[Rgb, ...] = ((0.15, 0.20, 0.45), (0.12, 0.12, 0.14), (0.40, 0.30, 0.20),
                             (0.45, 0.45, 0.48))
ROOFS: tuple[Rgb, ...] = ((0.55, 0.16, 0.12), (0.35, 0.35, 0.38), (0.40, 0.26, 0.16),
                          (0.20, 0.25, 0.35))
GLASS: Rgb = (0.62, 0.76, 0.86)
TYRE: Rgb = (0.08, 0.08, 0.09)


@dataclasses.dataclass(frozen=True)
class Paint:
    """How a component is coloured.

    Attributes:
        rgb: Base colour, floats in [0, 1].
        pattern: None, "striped" or "dotted".
        rgb2: Colour of the stripes or dots.
        period: Pattern period in pixels.
        angle: Stripe direction, radians.
        grain: Per-pixel multiplicative noise (fur, bark, paint).
        shade: Brightness falloff from the object's top to its bottom.
    """

    rgb: Rgb
    pattern: str | None = None
    rgb2: Rgb = (0.0, 0.0, 0.0)
    period: float = 4.0
    angle: float = 0.0
    grain: float = 0.03
    shade: float = 0.15

    def render(self, f: Frame, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Colours of the pixels of `mask` ([h, w] bool over the frame) -> [n, 3] float32."""
        colour = np.broadcast_to(np.asarray(self.rgb, np.float32), (int(mask.sum()), 3)).copy()
        if self.pattern is not None:
            x, y = f.x[mask], f.y[mask]
            if self.pattern == "striped":
                on = raster.stripes(x, y, self.period, self.angle)
            else:
                on = raster.dots(x, y, self.period, self.period * 0.3)
            colour[on] = np.asarray(self.rgb2, np.float32)
        light = 1.0 + self.shade * (0.35 - f.v[mask])  # [n]
        grain = 1.0 + self.grain * rng.standard_normal(light.shape).astype(np.float32)
        return np.clip(colour * (light * grain)[:, None], 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Component:
    """One painted piece of an object.

    Attributes:
        mask: [h, w] bool over the object's frame.
        paint: How it is coloured.
        part: Part concept it belongs to, or None (the object's own body).
        key: Part instance within the object (left wheel 0, right wheel 1, ...).
    """

    mask: np.ndarray
    paint: Paint
    part: str | None = None
    key: int = 0


@dataclasses.dataclass(frozen=True)
class Sprite:
    """A placed object, ready to paint.

    Attributes:
        concept: Object class.
        attributes: Its colour and texture attributes.
        frame: Its window and local coordinates.
        components: Back-to-front pieces.
        depth: Larger = nearer (painted later).
    """

    concept: str
    attributes: tuple[str, ...]
    frame: Frame
    components: tuple[Component, ...]
    depth: float

    def drawn(self, image_size: int) -> np.ndarray:
        """[S, S] bool: every pixel the sprite paints."""
        out = np.zeros((image_size, image_size), dtype=bool)
        window = out[self.frame.rows, self.frame.cols]
        for comp in self.components:
            window |= comp.mask
        return out


@dataclasses.dataclass(frozen=True)
class DrawContext:
    """What a drawing function gets: the frame, the main paint, randomness and pose."""

    f: Frame
    main: Paint
    rng: np.random.Generator
    flying: bool = False
    snowy: bool = False


def jitter(rgb: Rgb, rng: np.random.Generator, amount: float = 0.05) -> Rgb:
    """A nearby colour: per-channel gain and offset, so one colour name covers many shades."""
    gain = rng.uniform(0.85, 1.08)
    out = np.asarray(rgb) * gain + rng.normal(0.0, amount, 3)
    return tuple(float(c) for c in np.clip(out, 0.0, 1.0))  # type: ignore[return-value]


def scaled(rgb: Rgb, k: float) -> Rgb:
    return tuple(float(min(1.0, c * k)) for c in rgb)  # type: ignore[return-value]


def main_paint(cls_name: str, attributes: tuple[str, ...], width_px: float,
               rng: np.random.Generator) -> Paint:
    """The paint of an object's body from its colour and texture attributes."""
    colours = [a for a in attributes if a not in ("striped", "dotted")]
    textures = [a for a in attributes if a in ("striped", "dotted")]
    base = jitter(colour_rgb(colours[0]), rng) if colours else (0.6, 0.6, 0.6)
    if not textures:
        return Paint(base, grain=0.05 if cls_name in ("dog", "cat", "horse") else 0.03)
    texture = textures[0]
    dark = sum(base) < 0.9
    if cls_name in ("dog", "cat"):  # tabby stripes / dalmatian spots
        second = scaled(base, 0.45) if texture == "striped" else (
            (0.92, 0.92, 0.9) if dark else (0.08, 0.08, 0.08))
    else:
        second = (0.95, 0.95, 0.95) if not colours or colours[0] != "white" else (0.85, 0.1, 0.1)
    if texture == "striped":
        period = max(2.5, width_px / rng.uniform(4.0, 7.0))
        angle = rng.uniform(-0.3, 0.3) if cls_name in ("cat", "umbrella") else rng.uniform(
            0.0, math.pi)
        return Paint(base, "striped", second, period, angle, grain=0.04)
    period = max(3.0, width_px / rng.uniform(3.5, 6.0))
    return Paint(base, "dotted", second, period, grain=0.04)


def build_sprite(cls_name: str, attributes: tuple[str, ...], left: float, top: float,
                 width: float, height: float, mirrored: bool, image_size: int,
                 rng: np.random.Generator, flying: bool = False,
                 snowy: bool = False) -> Sprite | None:
    """Draws one object in the box [left, left+width] x [top, top+height].

    Returns:
        The sprite, or None if nothing of it falls inside the image.
    """
    if cls_name not in DRAWERS:
        object_class(cls_name)  # raises UnknownConceptError for an unknown class
        raise ValueError(f"no drawing for object class {cls_name!r}")
    f = raster.make_frame(image_size, left, top, width, height, mirrored)
    if f is None:
        return None
    ctx = DrawContext(f=f, main=main_paint(cls_name, attributes, width, rng), rng=rng,
                      flying=flying, snowy=snowy)
    components = tuple(c for c in DRAWERS[cls_name](ctx) if c.mask.any())
    if not components:
        return None
    return Sprite(cls_name, attributes, f, components, depth=top + height)


# ---------------------------------------------------------------------------------------------
# Drawing functions, one per object class. Parts are components with `part` set.


def _wheels(ctx: DrawContext, centres: tuple[float, ...], cv: float,
            r: float) -> list[Component]:
    f, out = ctx.f, []
    hub = Paint(jitter((0.62, 0.62, 0.64), ctx.rng), grain=0.02)
    for key, cu in enumerate(centres):
        out.append(Component(disc(f, cu, cv, r), Paint(TYRE, grain=0.05), "wheel", key))
        out.append(Component(disc(f, cu, cv, r * 0.45), hub, "wheel", key))
    return out


def _car(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    glass = Paint(jitter(GLASS, ctx.rng), grain=0.02, shade=0.3)
    return [
        Component(polygon(f, ((0.0, 0.42), (0.06, 0.34), (0.9, 0.34), (1.0, 0.48), (1.0, 0.8),
                              (0.0, 0.8))), main),
        Component(polygon(f, ((0.18, 0.36), (0.3, 0.04), (0.68, 0.04), (0.84, 0.36))), main),
        Component(rect(f, 0.95, 0.48, 1.0, 0.58), Paint((0.98, 0.92, 0.55))),
        Component(polygon(f, ((0.25, 0.34), (0.33, 0.1), (0.47, 0.1), (0.47, 0.34))),
                  glass, "window", 0),
        Component(polygon(f, ((0.51, 0.34), (0.51, 0.1), (0.65, 0.1), (0.76, 0.34))),
                  glass, "window", 1),
        *_wheels(ctx, (0.22, 0.78), 0.8, 0.19),
    ]


def _bus(ctx: DrawContext) -> list[Component]:
    f, main, rng = ctx.f, ctx.main, ctx.rng
    glass = Paint(jitter(GLASS, rng), grain=0.02, shade=0.3)
    out = [
        Component(polygon(f, ((0.0, 0.06), (0.03, 0.0), (0.97, 0.0), (1.0, 0.06), (1.0, 0.86),
                              (0.0, 0.86))), main),
        Component(rect(f, 0.0, 0.5, 1.0, 0.56), dataclasses.replace(
            main, rgb=scaled(main.rgb, 0.6), pattern=None)),
    ]
    n = int(rng.integers(4, 7))
    step = 0.64 / n
    for i in range(n):
        u0 = 0.05 + i * step
        out.append(Component(rect(f, u0, 0.1, u0 + step * 0.8, 0.42), glass, "window", i))
    out.append(Component(rect(f, 0.88, 0.08, 0.985, 0.45), glass, "window", n))
    out.append(Component(rect(f, 0.73, 0.14, 0.84, 0.86),
                         Paint(jitter((0.3, 0.3, 0.33), rng), shade=0.1), "door", 0))
    out.extend(_wheels(ctx, (0.17, 0.62), 0.86, 0.14))
    return out


def _truck(ctx: DrawContext) -> list[Component]:
    f, main, rng = ctx.f, ctx.main, ctx.rng
    return [
        Component(rect(f, 0.0, 0.0, 0.68, 0.78), main),
        Component(rect(f, 0.05, 0.3, 0.63, 0.38), Paint(scaled(main.rgb, 0.55))),
        Component(polygon(f, ((0.7, 0.3), (0.9, 0.3), (1.0, 0.52), (1.0, 0.82), (0.7, 0.82))),
                  main),
        Component(polygon(f, ((0.74, 0.35), (0.88, 0.35), (0.95, 0.52), (0.74, 0.52))),
                  Paint(jitter(GLASS, rng), shade=0.3), "window", 0),
        Component(rect(f, 0.0, 0.76, 1.0, 0.84), Paint((0.22, 0.22, 0.24))),
        *_wheels(ctx, (0.14, 0.42, 0.84), 0.84, 0.16),
    ]


def _boat(ctx: DrawContext) -> list[Component]:
    f, main, rng = ctx.f, ctx.main, ctx.rng
    canvas = Paint(jitter((0.95, 0.93, 0.86), rng, 0.03), grain=0.02, shade=0.1)
    out = [Component(rect(f, 0.48, 0.04, 0.52, 0.74), Paint(jitter((0.45, 0.35, 0.25), rng)))]
    out.append(Component(polygon(f, ((0.54, 0.04), (0.54, 0.7), (0.92, 0.7))), canvas, "sail", 0))
    if rng.random() < 0.6:
        out.append(Component(polygon(f, ((0.46, 0.16), (0.46, 0.7), (0.16, 0.7))), canvas,
                             "sail", 1))
    out.append(Component(polygon(f, ((0.0, 0.72), (1.0, 0.72), (0.84, 1.0), (0.16, 1.0))),
                         dataclasses.replace(main, shade=0.3), "hull", 0))
    out.append(Component(rect(f, 0.05, 0.77, 0.95, 0.81), Paint(scaled(main.rgb, 0.6)),
                         "hull", 0))
    return out


def _person(ctx: DrawContext) -> list[Component]:
    f, rng = ctx.f, ctx.rng
    skin = Paint(jitter(SKIN_TONES[rng.integers(len(SKIN_TONES))], rng, 0.02), shade=0.05)
    shirt = Paint(jitter(CLOTHES[rng.integers(len(CLOTHES))], rng), shade=0.2)
    trousers = Paint(jitter(TROUSERS[rng.integers(len(TROUSERS))], rng), shade=0.1)
    shoes = Paint((0.1, 0.08, 0.06))
    hair = Paint(jitter(((0.1, 0.07, 0.05), (0.45, 0.3, 0.15), (0.85, 0.7, 0.4))[
        rng.integers(3)], rng, 0.02))
    arm_down = rng.random() < 0.7
    out = [
        Component(rect(f, 0.3, 0.56, 0.47, 0.97), trousers, "leg", 0),
        Component(rect(f, 0.28, 0.94, 0.48, 1.0), shoes, "leg", 0),
        Component(rect(f, 0.53, 0.56, 0.7, 0.97), trousers, "leg", 1),
        Component(rect(f, 0.52, 0.94, 0.72, 1.0), shoes, "leg", 1),
        Component(polygon(f, ((0.22, 0.2), (0.78, 0.2), (0.72, 0.6), (0.28, 0.6))), shirt),
    ]
    if arm_down:
        out.append(Component(rect(f, 0.08, 0.22, 0.2, 0.52), shirt))
        out.append(Component(rect(f, 0.8, 0.22, 0.92, 0.52), shirt))
    else:  # waving
        out.append(Component(segment(f, (0.2, 0.24), (0.06, 0.04), 0.045), shirt))
        out.append(Component(rect(f, 0.8, 0.22, 0.92, 0.52), shirt))
    out.append(Component(disc(f, 0.5, 0.1, 0.09), skin, "head", 0))
    out.append(Component(disc(f, 0.5, 0.09, 0.09) & (f.v < 0.075), hair, "head", 0))
    return out


def _snowman(ctx: DrawContext) -> list[Component]:
    f, rng = ctx.f, ctx.rng
    snow = dataclasses.replace(ctx.main, rgb=jitter((0.95, 0.96, 0.99), rng, 0.02), shade=0.25)
    stick = Paint((0.35, 0.22, 0.12))
    black = Paint((0.06, 0.06, 0.07))
    buttons = disc(f, 0.5, 0.38, 0.025) | disc(f, 0.5, 0.48, 0.025)
    return [
        Component(disc(f, 0.5, 0.76, 0.22), snow),
        Component(segment(f, (0.35, 0.42), (0.05, 0.3), 0.02), stick),
        Component(segment(f, (0.65, 0.42), (0.95, 0.3), 0.02), stick),
        Component(disc(f, 0.5, 0.44, 0.15), snow),
        Component(buttons, black),
        Component(disc(f, 0.5, 0.2, 0.1), snow, "head", 0),
        Component(rect(f, 0.38, 0.0, 0.62, 0.1), black, "head", 0),
        Component(rect(f, 0.3, 0.08, 0.7, 0.115), black, "head", 0),
        Component(polygon(f, ((0.52, 0.19), (0.52, 0.23), (0.72, 0.21))),
                  Paint((0.95, 0.5, 0.1)), "head", 0),
    ]


def _legs(ctx: DrawContext, paint: Paint, spans: tuple[tuple[float, float], ...], top: float,
          key0: int) -> list[Component]:
    return [Component(rect(ctx.f, u0, top, u1, 1.0), paint, "leg", key0 + i)
            for i, (u0, u1) in enumerate(spans)]


def _dog(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    far = dataclasses.replace(main, rgb=scaled(main.rgb, 0.8))
    dark = Paint(scaled(main.rgb, 0.55) if sum(main.rgb) > 0.6 else (0.3, 0.22, 0.15))
    black = Paint((0.05, 0.05, 0.05))
    return [
        Component(segment(f, (0.14, 0.38), (0.03, 0.12), 0.07), main, "tail", 0),
        *_legs(ctx, far, ((0.24, 0.31), (0.62, 0.69)), 0.55, 0),
        Component(ellipse(f, 0.45, 0.48, 0.33, 0.2), main),
        *_legs(ctx, main, ((0.16, 0.24), (0.55, 0.63)), 0.55, 2),
        Component(disc(f, 0.78, 0.3, 0.16), main, "head", 0),
        Component(ellipse(f, 0.92, 0.38, 0.08, 0.07), main, "head", 0),
        Component(disc(f, 0.985, 0.35, 0.035), black, "head", 0),
        Component(ellipse(f, 0.72, 0.34, 0.05, 0.13), dark, "head", 0),
        Component(disc(f, 0.83, 0.25, 0.025), black, "head", 0),
    ]


def _cat(ctx: DrawContext) -> list[Component]:
    f, main, rng = ctx.f, ctx.main, ctx.rng
    far = dataclasses.replace(main, rgb=scaled(main.rgb, 0.8))
    eyes = Paint(jitter(((0.3, 0.75, 0.2), (0.9, 0.8, 0.1))[rng.integers(2)], rng, 0.02))
    return [
        Component(segment(f, (0.14, 0.5), (0.05, 0.22), 0.05)
                  | segment(f, (0.05, 0.22), (0.12, 0.04), 0.05), main, "tail", 0),
        *_legs(ctx, far, ((0.24, 0.29), (0.6, 0.65)), 0.58, 0),
        Component(ellipse(f, 0.45, 0.55, 0.3, 0.15), main),
        *_legs(ctx, main, ((0.18, 0.23), (0.54, 0.59)), 0.58, 2),
        Component(disc(f, 0.78, 0.36, 0.14), main, "head", 0),
        Component(polygon(f, ((0.68, 0.3), (0.69, 0.08), (0.77, 0.24))), main, "head", 0),
        Component(polygon(f, ((0.79, 0.24), (0.87, 0.08), (0.88, 0.3))), main, "head", 0),
        Component(disc(f, 0.74, 0.34, 0.025) | disc(f, 0.84, 0.34, 0.025), eyes, "head", 0),
        Component(disc(f, 0.8, 0.42, 0.02), Paint((0.9, 0.55, 0.6)), "head", 0),
    ]


def _horse(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    far = dataclasses.replace(main, rgb=scaled(main.rgb, 0.8))
    hair = Paint(scaled(main.rgb, 0.4) if sum(main.rgb) > 0.5 else (0.25, 0.2, 0.15))
    hoof = Paint((0.12, 0.1, 0.08))
    near_legs = ((0.16, 0.21), (0.57, 0.62))
    out = [
        Component(polygon(f, ((0.1, 0.26), (0.14, 0.3), (0.06, 0.66), (0.01, 0.64))), hair,
                  "tail", 0),
        *_legs(ctx, far, ((0.22, 0.27), (0.63, 0.68)), 0.5, 0),
        Component(ellipse(f, 0.44, 0.42, 0.32, 0.15), main),
        *_legs(ctx, main, near_legs, 0.5, 2),
    ]
    for i, (u0, u1) in enumerate(near_legs):
        out.append(Component(rect(f, u0, 0.94, u1, 1.0), hoof, "leg", 2 + i))
    out += [
        Component(polygon(f, ((0.62, 0.36), (0.74, 0.08), (0.85, 0.12), (0.76, 0.46))), main),
        Component(polygon(f, ((0.72, 0.1), (0.76, 0.06), (0.66, 0.36), (0.62, 0.34))), hair),
        Component(polygon(f, ((0.76, 0.04), (0.85, 0.0), (1.0, 0.2), (0.95, 0.27),
                              (0.86, 0.2))), main, "head", 0),
        Component(disc(f, 0.86, 0.08, 0.02), Paint((0.05, 0.05, 0.05)), "head", 0),
    ]
    return out


def _bird(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    wing_paint = Paint(scaled(main.rgb, 0.65) if sum(main.rgb) > 0.5 else (0.35, 0.35, 0.4))
    if ctx.flying:
        wing = polygon(f, ((0.3, 0.5), (0.62, 0.5), (0.42, 0.0)))
    else:
        wing = ellipse(f, 0.4, 0.55, 0.2, 0.14)
    return [
        Component(polygon(f, ((0.18, 0.5), (0.0, 0.38), (0.0, 0.66))), wing_paint),
        Component(ellipse(f, 0.45, 0.55, 0.33, 0.28), main),
        Component(disc(f, 0.78, 0.38, 0.2), main),
        Component(polygon(f, ((0.88, 0.36), (1.0, 0.42), (0.88, 0.46))), Paint((0.95, 0.6, 0.1))),
        Component(disc(f, 0.82, 0.34, 0.04), Paint((0.02, 0.02, 0.02))),
        Component(wing, wing_paint, "wing", 0),
    ]


def _house(ctx: DrawContext) -> list[Component]:
    f, main, rng = ctx.f, ctx.main, ctx.rng
    glass = Paint(jitter(GLASS, rng), shade=0.2)
    frame = Paint((0.95, 0.95, 0.93))
    roof = Paint(jitter(ROOFS[rng.integers(len(ROOFS))], rng), grain=0.06, shade=0.2)
    out = [
        Component(rect(f, 0.68, 0.06, 0.78, 0.3), Paint(jitter((0.6, 0.3, 0.22), rng))),
        Component(polygon(f, ((0.0, 0.44), (0.5, 0.0), (1.0, 0.44))), roof, "roof", 0),
        Component(rect(f, 0.07, 0.42, 0.93, 1.0), dataclasses.replace(main, shade=0.05)),
    ]
    if ctx.snowy:
        out.append(Component(polygon(f, ((0.1, 0.36), (0.5, 0.03), (0.9, 0.36),
                                         (0.5, 0.12))), Paint((0.95, 0.96, 0.99)), "roof", 0))
    for key, (u0, u1) in enumerate(((0.16, 0.34), (0.66, 0.84))):
        out.append(Component(rect(f, u0, 0.53, u1, 0.7), glass, "window", key))
        cross = rect(f, (u0 + u1) / 2 - 0.01, 0.53, (u0 + u1) / 2 + 0.01, 0.7)
        cross |= rect(f, u0, 0.61, u1, 0.62)
        out.append(Component(cross, frame, "window", key))
    out.append(Component(rect(f, 0.43, 0.66, 0.57, 1.0),
                         Paint(jitter((0.35, 0.2, 0.1), rng), grain=0.05), "door", 0))
    return out


def _tree(ctx: DrawContext) -> list[Component]:
    f, rng = ctx.f, ctx.rng
    bark = Paint(jitter((0.36, 0.24, 0.14), rng), grain=0.12, shade=0.1)
    autumn = not ctx.snowy and rng.random() < 0.12
    green = (0.82, 0.52, 0.12) if autumn else (0.16, 0.48, 0.16)
    leaves = Paint(jitter(green, rng), grain=0.18, shade=0.35)
    if ctx.snowy or rng.random() < 0.35:  # conifer
        crown = (polygon(f, ((0.5, 0.0), (0.85, 0.35), (0.15, 0.35)))
                 | polygon(f, ((0.5, 0.18), (0.95, 0.58), (0.05, 0.58)))
                 | polygon(f, ((0.5, 0.38), (1.0, 0.82), (0.0, 0.82))))
        out = [Component(rect(f, 0.44, 0.78, 0.56, 1.0), bark, "trunk", 0),
               Component(crown, dataclasses.replace(leaves, rgb=scaled(leaves.rgb, 0.75)),
                         "leaves", 0)]
        if ctx.snowy:
            caps = crown & ((f.v < 0.1) | ((f.v > 0.2) & (f.v < 0.27))
                            | ((f.v > 0.4) & (f.v < 0.46)))
            out.append(Component(caps, Paint((0.94, 0.95, 0.98)), "leaves", 0))
        return out
    crown = (ellipse(f, 0.5, 0.3, 0.46, 0.28) | ellipse(f, 0.28, 0.48, 0.27, 0.17)
             | ellipse(f, 0.72, 0.48, 0.27, 0.17) | ellipse(f, 0.5, 0.12, 0.3, 0.12))
    return [Component(rect(f, 0.42, 0.55, 0.58, 1.0), bark, "trunk", 0),
            Component(crown, leaves, "leaves", 0)]


def _ball(ctx: DrawContext) -> list[Component]:
    return [Component(disc(ctx.f, 0.5, 0.5, 0.5), dataclasses.replace(ctx.main, shade=0.5))]


def _kite(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    spar = Paint((0.25, 0.2, 0.15))
    bows = (polygon(f, ((0.4, 0.85), (0.5, 0.9), (0.4, 0.92)))
            | polygon(f, ((0.5, 0.95), (0.6, 0.93), (0.6, 1.0))))
    return [
        Component(polygon(f, ((0.5, 0.0), (1.0, 0.32), (0.5, 0.78), (0.0, 0.32))), main),
        Component(segment(f, (0.5, 0.02), (0.5, 0.76), 0.02)
                  | segment(f, (0.04, 0.32), (0.96, 0.32), 0.02), spar),
        Component(segment(f, (0.5, 0.78), (0.42, 0.9), 0.015)
                  | segment(f, (0.42, 0.9), (0.55, 1.0), 0.015), spar),
        Component(bows, dataclasses.replace(main, pattern=None)),
    ]


def _umbrella(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    return [
        Component(rect(f, 0.48, 0.3, 0.52, 1.0), Paint((0.85, 0.85, 0.85))),
        Component(ellipse(f, 0.5, 0.36, 0.5, 0.34) & (f.v <= 0.36), main),
        Component(rect(f, 0.485, 0.0, 0.515, 0.04), Paint((0.3, 0.3, 0.3))),
    ]


def _chair(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    return [
        Component(rect(f, 0.1, 0.0, 0.24, 0.58), main),
        *_legs(ctx, dataclasses.replace(main, rgb=scaled(main.rgb, 0.75)),
               ((0.12, 0.2), (0.82, 0.9)), 0.6, 0),
        Component(rect(f, 0.1, 0.5, 0.92, 0.6), dataclasses.replace(main, shade=0.0)),
    ]


def _table(ctx: DrawContext) -> list[Component]:
    f, main = ctx.f, ctx.main
    return [
        *_legs(ctx, dataclasses.replace(main, rgb=scaled(main.rgb, 0.75)),
               ((0.06, 0.13), (0.87, 0.94)), 0.13, 0),
        Component(rect(f, 0.0, 0.0, 1.0, 0.13), dataclasses.replace(main, shade=0.0)),
        Component(rect(f, 0.04, 0.13, 0.96, 0.2), Paint(scaled(main.rgb, 0.6))),
    ]


DRAWERS: types.MappingProxyType[str, Callable[[DrawContext], list[Component]]] = (
    types.MappingProxyType({
        "car": _car, "bus": _bus, "truck": _truck, "boat": _boat, "person": _person,
        "snowman": _snowman, "dog": _dog, "cat": _cat, "horse": _horse, "bird": _bird,
        "house": _house, "tree": _tree, "ball": _ball, "kite": _kite, "umbrella": _umbrella,
        "chair": _chair, "table": _table,
    }))
