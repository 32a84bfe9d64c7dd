"""Seeded synthetic localisation dataset for swiftcam's demo model.

Every sample is an RGB image with exactly one *target* shape from
:data:`CLASS_NAMES` drawn at a random position, scale, rotation and colour on
a cluttered, textured background, plus a few *distractors* (lines, scribbles,
small irregular blobs, partial arcs, dot clusters) that are deliberately not
complete class shapes, so the label is never ambiguous.

Only NumPy and Pillow are used, so the generator also runs without torch.

A sample is fully determined by ``(seed, split, index)``: each one draws from
its own ``numpy.random.default_rng([seed, split_id, index])``, so samples can
be generated in any order, in parallel, or one at a time, with identical
results.

Conventions
-----------
* images are ``uint8`` arrays of shape ``(size, size, 3)``, RGB;
* boxes are ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive (the
  Pillow box convention): the target covers columns ``x0 .. x1 - 1`` and rows
  ``y0 .. y1 - 1``.  The box is the tight box of the rendered target (pixels
  with coverage >= 50 %), measured before distractors or occluders are drawn.
* the target's *scale* is the longer side of its box, drawn uniformly from
  ``scale_range`` (fractions of the image side).

Run ``python synthetic_shapes.py --out preview.png`` to render a contact
sheet of samples with their boxes.
"""

import argparse
import functools
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ("circle", "square", "triangle", "star",
               "cross", "ring", "hexagon", "heart")
SPLITS = {"train": 0, "test": 1, "calibration": 2, "examples": 3}
DEFAULT_SIZE = 160
DEFAULT_SCALE_RANGE = (0.35, 0.6)
SUPERSAMPLE = 2  # shapes are rasterised at 2x and box-filtered down


class Sample(NamedTuple):
    """One generated sample: ``image`` (H, W, 3) uint8, ``label``, ``box``."""

    image: np.ndarray
    label: int
    box: tuple


# --------------------------------------------------------------------------
# Shape outlines in unit coordinates (centred on the origin, y pointing down)
# --------------------------------------------------------------------------

def _regular_polygon(n, phase_deg):
    angles = np.deg2rad(phase_deg + 360.0 * np.arange(n) / n)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(rng):
    inner = rng.uniform(0.38, 0.5)
    radii = np.tile([1.0, inner], 5)
    angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(rng):
    w = rng.uniform(0.26, 0.38)
    return np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w),
                     (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)],
                    dtype=float)


def _heart():
    t = np.linspace(0.0, 2.0 * np.pi, 72, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, -y], axis=1) / 16.0


def shape_polygons(name, rng):
    """Return ``(outer, hole)`` unit polygons for class ``name``.

    ``hole`` is ``None`` except for the ring, whose hole is cut out of the
    outer disc.
    """
    circle = _regular_polygon(72, 0.0)
    if name == "circle":
        return circle, None
    if name == "ring":
        return circle, circle * rng.uniform(0.45, 0.65)
    if name == "square":
        return _regular_polygon(4, 45.0), None
    if name == "triangle":
        return _regular_polygon(3, -90.0), None
    if name == "hexagon":
        return _regular_polygon(6, 0.0), None
    if name == "star":
        return _star(rng), None
    if name == "cross":
        return _cross(rng), None
    if name == "heart":
        return _heart(), None
    raise ValueError(f"unknown shape {name!r}")


# --------------------------------------------------------------------------
# Small raster helpers
# --------------------------------------------------------------------------

def _random_colour(rng):
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _canvas(size):
    """A blank supersampled coverage mask and its drawing context."""
    mask = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    return mask, ImageDraw.Draw(mask)


def _coverage(mask):
    """Box-filter a supersampled mask down to a float coverage in [0, 1]."""
    small = mask.reduce(SUPERSAMPLE)
    return np.asarray(small, dtype=np.float32) / 255.0


def _composite(image, coverage, paint):
    """Alpha-blend ``paint`` (RGB triple or H x W x 3) where covered.

    Only the bounding rectangle of the covered pixels is touched, which keeps
    small distractors cheap.
    """
    rows = np.flatnonzero(coverage.any(axis=1))
    cols = np.flatnonzero(coverage.any(axis=0))
    if rows.size == 0:
        return
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    paint = np.asarray(paint, dtype=np.float32)
    if paint.ndim == 3:
        paint = paint[window]
    alpha = coverage[window][..., None]
    patch = image[window]
    patch += alpha * (paint - patch)


def _smooth_noise(rng, size, grid, channels=1):
    """Low-frequency noise in [0, 1]: a random grid, bicubically upsampled."""
    layers = []
    for _ in range(channels):
        cells = (rng.uniform(0, 255, size=(grid, grid))).astype(np.uint8)
        big = Image.fromarray(cells).resize((size, size), Image.BICUBIC)
        layers.append(np.asarray(big, dtype=np.float32) / 255.0)
    return np.stack(layers, axis=-1)


@functools.lru_cache(maxsize=4)
def _coordinates(size):
    """Pixel x and y coordinate grids (cached, read-only)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def _linear_ramp(rng, size):
    """A [0, 1] ramp along a random direction."""
    xs, ys = _coordinates(size)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    proj = xs * float(np.cos(angle)) + ys * float(np.sin(angle))
    proj -= proj.min()
    return proj / max(float(proj.max()), 1e-6)


def _two_colour_fill(rng, size, kind):
    """An H x W x 3 fill: ``"gradient"``, ``"stripes"`` or ``"checker"``."""
    c1, c2 = _random_colour(rng), _random_colour(rng)
    if kind == "gradient":
        t = _linear_ramp(rng, size)
    else:
        xs, ys = _coordinates(size)
        period = rng.uniform(4.0, 16.0)
        if kind == "stripes":
            angle = rng.uniform(0.0, np.pi)
            proj = xs * float(np.cos(angle)) + ys * float(np.sin(angle))
            t = 0.5 + 0.5 * np.sin(proj * float(2.0 * np.pi / period))
        else:
            t = (xs // period + ys // period) % 2
    return c1 + (c2 - c1) * t[..., None]


# --------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------

def _background(rng, size, clutter):
    """Gradient + low-frequency colour noise + irregular textured regions."""
    image = _two_colour_fill(rng, size, "gradient")
    amount = float(rng.uniform(0.1, 0.45))
    noise = _smooth_noise(rng, size, int(rng.integers(3, 9)), channels=3)
    image = image * (1.0 - amount) + noise * amount
    for _ in range(int(rng.binomial(3, clutter))):
        _add_texture_region(rng, image)
    return image


def _add_texture_region(rng, image):
    """Paint stripes/checker/noise into an irregular, soft-edged region."""
    size = image.shape[0]
    field = _smooth_noise(rng, size, int(rng.integers(3, 7)))[..., 0]
    threshold = np.quantile(field, rng.uniform(0.4, 0.8))
    region = np.clip((field - float(threshold)) * 12.0, 0.0, 1.0)
    kind = rng.choice(["stripes", "checker", "noise"])
    if kind == "noise":
        paint = rng.random(size=(size, size, 3), dtype=np.float32)
    else:
        paint = _two_colour_fill(rng, size, kind)
    _composite(image, region * float(rng.uniform(0.35, 1.0)), paint)


# --------------------------------------------------------------------------
# Distractors (never a complete class shape)
# --------------------------------------------------------------------------

def _random_point(rng, size):
    return rng.uniform(0, size * SUPERSAMPLE, size=2)


def _draw_line(rng, draw, size):
    start = _random_point(rng, size)
    length = rng.uniform(0.2, 0.8) * size * SUPERSAMPLE
    angle = rng.uniform(0.0, 2.0 * np.pi)
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    width = int(rng.integers(1, 5)) * SUPERSAMPLE
    draw.line([tuple(start), tuple(end)], fill=255, width=width)


def _draw_scribble(rng, draw, size):
    points = [_random_point(rng, size)]
    for _ in range(int(rng.integers(2, 5))):
        step = rng.normal(0.0, 0.15 * size * SUPERSAMPLE, size=2)
        points.append(points[-1] + step)
    width = int(rng.integers(1, 4)) * SUPERSAMPLE
    draw.line([tuple(p) for p in points], fill=255, width=width, joint="curve")


def _draw_blob(rng, draw, size):
    """A small, irregular (lumpy, elongated) blob."""
    centre = _random_point(rng, size)
    radius = rng.uniform(0.025, 0.07) * size * SUPERSAMPLE
    n = int(rng.integers(6, 10))
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=n))
    radii = radius * rng.uniform(0.45, 1.3, size=n)
    stretch = rng.uniform(1.0, 2.2)
    points = np.stack([stretch * radii * np.cos(angles),
                       radii * np.sin(angles)], axis=1) + centre
    draw.polygon([tuple(p) for p in points], fill=255)


def _draw_arc(rng, draw, size):
    """A partial circular arc (at most 220 degrees, so never a ring)."""
    centre = _random_point(rng, size)
    radius = rng.uniform(0.06, 0.2) * size * SUPERSAMPLE
    start = rng.uniform(0.0, 360.0)
    extent = rng.uniform(60.0, 220.0)
    box = [tuple(centre - radius), tuple(centre + radius)]
    width = int(rng.integers(2, 6)) * SUPERSAMPLE
    draw.arc(box, start, start + extent, fill=255, width=width)


def _draw_dots(rng, draw, size):
    centre = _random_point(rng, size)
    for _ in range(int(rng.integers(3, 8))):
        p = centre + rng.normal(0.0, 0.05 * size * SUPERSAMPLE, size=2)
        r = rng.uniform(1.0, 3.0) * SUPERSAMPLE
        draw.ellipse([tuple(p - r), tuple(p + r)], fill=255)


DISTRACTORS = (_draw_line, _draw_scribble, _draw_blob, _draw_arc, _draw_dots)


def _add_distractor(rng, image, colour, painter=None):
    size = image.shape[0]
    mask, draw = _canvas(size)
    if painter is None:
        painter = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
    painter(rng, draw, size)
    _composite(image, _coverage(mask), colour)


# --------------------------------------------------------------------------
# Target
# --------------------------------------------------------------------------

def _place_polygon(rng, outer, hole, size, scale_range, max_angle):
    """Randomly stretch, rotate, scale and translate a unit polygon.

    Returns ``(outer, hole)`` in supersampled pixel coordinates; the longer
    side of the outer polygon's box is ``scale_range`` times the image side.
    """
    stretch = np.array([rng.uniform(0.85, 1.15), 1.0])
    angle = rng.uniform(-max_angle, max_angle)
    rot = np.array([[np.cos(angle), -np.sin(angle)],
                    [np.sin(angle), np.cos(angle)]])

    def transform(points):
        return (points * stretch) @ rot.T

    outer = transform(outer)
    lo, hi = outer.min(axis=0), outer.max(axis=0)
    side = rng.uniform(*scale_range) * size * SUPERSAMPLE
    factor = side / float((hi - lo).max())
    margin = 2 * SUPERSAMPLE
    room = size * SUPERSAMPLE - (hi - lo) * factor - 2 * margin
    offset = margin + rng.uniform(0.0, 1.0, size=2) * room - lo * factor
    outer = outer * factor + offset
    if hole is not None:
        hole = transform(hole) * factor + offset
    return outer, hole


def _target_coverage(rng, name, size, scale_range):
    outer, hole = shape_polygons(name, rng)
    # hearts stay roughly upright; everything else rotates freely
    max_angle = 0.7 if name == "heart" else np.pi
    outer, hole = _place_polygon(rng, outer, hole, size, scale_range,
                                 max_angle)
    mask, draw = _canvas(size)
    draw.polygon([tuple(p) for p in outer], fill=255)
    if hole is not None:
        draw.polygon([tuple(p) for p in hole], fill=0)
    return _coverage(mask)


def _tight_box(coverage):
    ys, xs = np.nonzero(coverage >= 0.5)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _contrasting_colour(rng, image, coverage, min_distance=0.3,
                        quantile=0.2, tries=30):
    """A colour that stands out from (most of) the background it covers.

    The background under a target is often textured, so instead of its mean
    colour the ``quantile`` of the colour distances to the covered pixels is
    compared with ``min_distance``: at least 80 % of the pixels under the
    target must differ clearly from the chosen colour.
    """
    ys, xs = np.nonzero(coverage >= 0.5)
    pick = rng.integers(0, len(xs), size=min(256, len(xs)))
    under = image[ys[pick], xs[pick]]
    best, best_distance = None, -1.0
    for _ in range(tries):
        colour = _random_colour(rng)
        distances = np.linalg.norm(under - colour, axis=1)
        distance = float(np.quantile(distances, quantile))
        if distance >= min_distance:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _target_paint(rng, image, coverage):
    """``(paint, base colour)``: mostly solid, else gradient/stripes/noise."""
    size = image.shape[0]
    base = _contrasting_colour(rng, image, coverage)
    style = rng.choice(["solid", "gradient", "stripes", "noisy"],
                       p=[0.55, 0.2, 0.1, 0.15])
    if style == "solid":
        return base, base
    if style == "noisy":
        noise = rng.standard_normal(size=(size, size, 3), dtype=np.float32)
        return np.clip(base + 0.08 * noise, 0.0, 1.0), base
    fill = _two_colour_fill(rng, size, style)
    return 0.5 * fill + 0.5 * base, base


def _dilate(coverage):
    """Grow a coverage mask by one pixel (3x3 maximum filter)."""
    mask = Image.fromarray((coverage * 255).astype(np.uint8))
    grown = mask.filter(ImageFilter.MaxFilter(3))
    return np.asarray(grown, dtype=np.float32) / 255.0


def _draw_target(rng, image, label, scale_range):
    size = image.shape[0]
    coverage = _target_coverage(rng, CLASS_NAMES[label], size, scale_range)
    box = _tight_box(coverage)
    paint, colour = _target_paint(rng, image, coverage)
    if rng.random() < 0.3:  # contrasting outline
        _composite(image, _dilate(coverage), _random_colour(rng))
    _composite(image, coverage, paint)
    return box, colour


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def make_sample(seed, index, split="train", size=DEFAULT_SIZE,
                scale_range=DEFAULT_SCALE_RANGE, label=None, clutter=1.0):
    """Generate sample ``index`` of ``split`` for ``seed``.

    ``label`` forces the target class (otherwise it is drawn uniformly).
    ``clutter`` in [0, 1] scales the expected number of textured regions and
    distractors and the pixel noise; 1.0 (the default, used for all
    held-out data) is the full difficulty, lower values serve as a training
    curriculum.
    """
    rng = np.random.default_rng([seed, SPLITS[split], index])
    if label is None:
        label = int(rng.integers(len(CLASS_NAMES)))
    image = _background(rng, size, clutter)
    reuse_target_colour = rng.random() < 0.3
    for _ in range(1 + int(rng.binomial(4, clutter))):
        _add_distractor(rng, image, _random_colour(rng))
    box, colour = _draw_target(rng, image, label, scale_range)
    for _ in range(int(rng.binomial(3, clutter))):
        _add_distractor(rng, image, colour if reuse_target_colour
                        else _random_colour(rng))
    if rng.random() < 0.3 * clutter:  # thin occluding line over the scene
        _add_distractor(rng, image, _random_colour(rng), _draw_line)
    image = _finish(rng, image, clutter)
    return Sample(image, label, box)


def _finish(rng, image, clutter):
    """Sensor-like noise and an occasional slight blur; convert to uint8."""
    sigma = float(rng.uniform(0.0, 0.05)) * clutter
    image += sigma * rng.standard_normal(size=image.shape, dtype=np.float32)
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if rng.random() < 0.25:
        radius = rng.uniform(0.4, 1.0)
        pixels = np.array(Image.fromarray(pixels).filter(
            ImageFilter.GaussianBlur(radius)))
    return pixels


class SyntheticShapes:
    """A fixed-length, indexable view of one split (like a torch Dataset).

    ``dataset[i]`` returns a :class:`Sample` ``(image, label, box)``.
    """

    def __init__(self, seed, split="train", length=1000, size=DEFAULT_SIZE,
                 scale_range=DEFAULT_SCALE_RANGE, offset=0):
        self.seed = seed
        self.split = split
        self.length = length
        self.size = size
        self.scale_range = scale_range
        self.offset = offset

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if not 0 <= index < self.length:
            raise IndexError(index)
        return make_sample(self.seed, self.offset + index, self.split,
                           self.size, self.scale_range)


def contact_sheet(samples, columns=8):
    """Tile samples into one image with their boxes drawn in."""
    size = samples[0].image.shape[0]
    rows = (len(samples) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * size, rows * (size + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, sample in enumerate(samples):
        x, y = (i % columns) * size, (i // columns) * (size + 12)
        sheet.paste(Image.fromarray(sample.image), (x, y))
        x0, y0, x1, y1 = sample.box
        draw.rectangle([x + x0, y + y0, x + x1 - 1, y + y1 - 1],
                       outline=(255, 0, 0))
        draw.text((x + 2, y + size), CLASS_NAMES[sample.label], fill="black")
    return sheet


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="synthetic_shapes_preview.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", choices=sorted(SPLITS))
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    args = parser.parse_args()
    data = SyntheticShapes(args.seed, args.split, args.count, args.size)
    contact_sheet([data[i] for i in range(len(data))]).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
