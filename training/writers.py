"""The "writers" benchmark: the ten digits in handwriting fonts, drawn the way the canvas draws them.

A writer is one font file of a handwriting font packaged by Debian. Its drawings are its
digits at random size, position, rotation, slant and pen thickness, bent by a smooth random
displacement field, in the canvas's colour styles (``clean``) and in the development set's
messy variants, encoded as the browser sends them. Generation is seeded: the same seed gives
the same bytes. Fonts are for evaluation only; base training never sees them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from training import NUM_CLASSES
from training.devset import draw

FONT_ROOT = Path("/usr/share/fonts")
# (Debian package, font file under FONT_ROOT, family). A family is one hand: sibling weights
# (kiloji_*) and Aoyagi Kouzan's brush fonts (aoyagi-soseki, kouzan-*: the same digits but the
# 0 or the 1) are one family, so no group split separates a hand from itself.
FONTS = (
    ("fonts-aoyagi-soseki", "truetype/aoyagi-soseki/aoyagi-soseki.ttf", "kouzan"),
    ("fonts-ecolier-court", "truetype/ecolier-court/Ecolier-court.ttf", "ecolier-court"),
    ("fonts-havana", "opentype/havana/Havana-Regular.otf", "havana"),
    ("fonts-kaushanscript", "opentype/kaushanscript/KaushanScript-Regular.otf", "kaushanscript"),
    ("fonts-kiloji", "truetype/kiloji/kiloji.ttf", "kiloji"),
    ("fonts-kiloji", "truetype/kiloji/kiloji_b.ttf", "kiloji"),
    ("fonts-kiloji", "truetype/kiloji/kiloji_d.ttf", "kiloji"),
    ("fonts-kiloji", "truetype/kiloji/kiloji_p.ttf", "kiloji"),
    ("fonts-kouzan-mouhitsu", "truetype/kouzan-mouhitsu/kouzan-mouhitsu.ttf", "kouzan"),
    ("fonts-kouzan-mouhitsu", "truetype/kouzan-mouhitsu/kouzan-mouhitsu-gyosho.ttf", "kouzan"),
    ("fonts-kouzan-mouhitsu", "truetype/kouzan-mouhitsu/KouzanBrushFontSousyo.ttf", "kouzan"),
    ("fonts-kristi", "truetype/kristi/Kristi.ttf", "kristi"),
    ("fonts-leckerli-one", "truetype/leckerli-one/LeckerliOne-Regular.ttf", "leckerli-one"),
    ("fonts-lobster", "opentype/lobster/lobster.otf", "lobster"),
    ("fonts-rufscript", "truetype/rufscript/Rufscript010.ttf", "rufscript"),
    ("fonts-seto", "truetype/seto/setofont.ttf", "seto"),
    ("fonts-seto", "truetype/seto/setofont-ex.ttf", "seto"),
)
# Fixed groups of families. teach: drawings Step 10's benchmark contributes; reference: shipped
# with a deployment for its promotion gate; exam: never contributed nor gated, only measured.
# Kristi, the writer the base models read worst, is taught: it is the case contributions must
# fix, and fine-tuning on it is then measured on writers it never saw.
GROUPS = {
    "teach": ("kristi", "kiloji", "lobster", "rufscript"),
    "reference": ("kouzan", "kaushanscript", "havana"),
    "exam": ("ecolier-court", "leckerli-one", "seto"),
}
PACKAGES = tuple(sorted({package for package, _, _ in FONTS}))

CLEAN_STYLES = ("plain", "transparent", "inverted")  # dark on white, on a transparent canvas, white on black
MESSY_VARIANTS = ("tiny", "thick", "thin", "stray_dot", "jpeg", "wide")  # the development set's
CANVAS = (280, 280)  # the web page's canvas
GLYPH_HEIGHT = 80  # about 4x MNIST's 20 px digit, the scale the development set's pens work at
RENDER_SIZE = 240  # font size the glyphs are rendered at before shrinking to GLYPH_HEIGHT
MAX_ROTATION = 12.0  # degrees
MAX_SLANT = 0.15  # horizontal shear
JITTER = 0.03  # elastic displacement, as a fraction of the glyph's height
# A glyph without counters (1, 2, 3, 5, 7) encloses almost nothing; drawn as an outline it
# encloses its whole stroke.
HOLLOW_DIGITS = (1, 2, 3, 5, 7)
HOLLOW_FRACTION = 0.25


class FontsMissing(RuntimeError):
    """A listed font file is not installed: the benchmark would silently shrink."""


@dataclass(frozen=True)
class Writer:
    name: str
    family: str
    group: str
    path: Path


@dataclass(frozen=True)
class WriterDrawing:
    data_url: str
    label: int
    writer: str
    variant: str


def group_of(family: str) -> str:
    return next(group for group, families in GROUPS.items() if family in families)


def font_files(root: Path = FONT_ROOT) -> list[tuple[str, Path]]:
    """(family, path) of every listed font file; raises FontsMissing naming the packages to install."""
    missing = sorted({package for package, file, _ in FONTS if not (root / file).is_file()})
    if missing:
        raise FontsMissing(f"install the font packages {', '.join(missing)} (apt-get install)")
    return [(family, root / file) for _, file, family in FONTS]


def writers(root: Path = FONT_ROOT, group: str | None = None) -> list[Writer]:
    """Every usable writer (``group`` alone if given), sorted by name."""
    skip = skipped(root)
    found = [Writer(path.stem.lower(), family, group_of(family), path)
             for family, path in font_files(root) if path.name not in skip]
    return sorted((w for w in found if group in (None, w.group)), key=lambda w: w.name)


def skipped(root: Path = FONT_ROOT) -> dict[str, str]:
    """Font files left out, and why: no digits, hollow outlines, or another file's very digits."""
    reasons, kept = {}, []
    for _, path in font_files(root):
        reason = unusable(path)
        if reason is None:
            twin = next((other for other in kept if _same_digits(path, other)), None)
            if twin is not None:
                # One hand counted twice would weigh twice in every figure.
                reason = f"its digits are those of {twin.name}"
            else:
                kept.append(path)
        if reason:
            reasons[path.name] = reason
    return reasons


def _same_digits(first: Path, second: Path) -> bool:
    def small(glyph: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(glyph).resize((32, 32), Image.Resampling.BOX))

    return all(float(np.abs(small(a) - small(b)).mean()) < 0.005
               for a, b in zip(glyphs(first), glyphs(second)))


@lru_cache(maxsize=None)
def unusable(path: Path) -> str | None:
    """Why a font cannot be a writer (no digits, or hollow outlines), or None."""
    return glyph_problem(_raw_glyphs(path))


def glyph_problem(glyphs: list[np.ndarray]) -> str | None:
    """Why these ten rendered digits (float ink, one array each) are no writer's, or None."""
    if any(glyph.max() < 0.5 for glyph in glyphs):
        return "some digits render blank"
    masks = [glyph > 0.5 for glyph in glyphs]
    if all(mask.shape == masks[0].shape and np.array_equal(mask, masks[0]) for mask in masks[1:]):
        return "every digit renders the same glyph (.notdef)"
    enclosed = [_enclosed_fraction(masks[digit]) for digit in HOLLOW_DIGITS]
    if float(np.median(enclosed)) > HOLLOW_FRACTION:
        return "the digits are hollow outlines"
    return None


def _enclosed_fraction(mask: np.ndarray) -> float:
    """The share of a glyph's filled silhouette that is background enclosed by ink."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0.0
    mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # Pillow's floodfill is pure Python: shrink first, keeping every touched cell as ink so a
    # hairline still closes what it encloses.
    scale = 64 / max(mask.shape)
    if scale < 1:
        size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
        grey = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
        mask = np.asarray(grey) > 0
    # A copy: an image made from an array is read-only, and floodfill would silently do nothing.
    image = Image.fromarray(np.pad(mask, 1).astype(np.uint8) * 255).copy()
    ImageDraw.floodfill(image, (0, 0), 128)
    holes = int((np.asarray(image) == 0).sum())
    return holes / max(holes + int(mask.sum()), 1)


@lru_cache(maxsize=None)
def _raw_glyphs(path: Path) -> tuple[np.ndarray, ...]:
    font = ImageFont.truetype(str(path), RENDER_SIZE)
    glyphs = []
    for digit in range(NUM_CLASSES):
        image = Image.new("L", (RENDER_SIZE * 3, RENDER_SIZE * 2), 0)
        ImageDraw.Draw(image).text((RENDER_SIZE // 2, RENDER_SIZE // 4), str(digit), font=font, fill=255)
        glyphs.append(np.asarray(image, np.float32) / 255)
    return tuple(glyphs)


@lru_cache(maxsize=None)
def glyphs(path: Path) -> tuple[np.ndarray, ...]:
    """The ten digits' ink, cropped, GLYPH_HEIGHT px high, float32 in [0, 1]."""
    out = []
    for raw in _raw_glyphs(path):
        rows = np.flatnonzero(raw.max(axis=1) > 0.05)
        cols = np.flatnonzero(raw.max(axis=0) > 0.05)
        crop = raw[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        scale = GLYPH_HEIGHT / crop.shape[0]
        size = (max(1, round(crop.shape[1] * scale)), GLYPH_HEIGHT)
        out.append(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BOX), np.float32))
    return tuple(out)


def handwrite(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One drawing's ink from a glyph: rotated, slanted, elastically bent, with its own pen."""
    height, width = glyph.shape
    margin = height // 3
    source = np.pad(glyph, margin)
    rows, cols = source.shape
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    slant = rng.uniform(-MAX_SLANT, MAX_SLANT)
    # Each output pixel samples the source at the inverse of rotation-then-slant about the centre.
    ys, xs = np.indices((rows, cols), dtype=np.float32)
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    dy, dx = ys - cy, xs - cx
    dx = dx + slant * dy
    cos, sin = np.cos(angle), np.sin(angle)
    src_x = cos * dx - sin * dy + cx
    src_y = sin * dx + cos * dy + cy
    # A smooth displacement field: coarse random offsets, interpolated over the whole glyph.
    for coordinate in (src_x, src_y):
        coarse = rng.normal(0, JITTER * height, (4, 4)).astype(np.float32)
        coordinate += np.asarray(Image.fromarray(coarse).resize((cols, rows), Image.Resampling.BICUBIC))
    ink = _bilinear(source, src_y, src_x)
    return _pen_width(ink, int(rng.choice([-1, 0, 0, 1, 2])))


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    rows, cols = image.shape
    padded = np.pad(image, 1)
    ys = np.clip(ys + 1, 0, rows)
    xs = np.clip(xs + 1, 0, cols)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    fy, fx = ys - y0, xs - x0
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _pen_width(ink: np.ndarray, steps: int) -> np.ndarray:
    """Thicker (steps > 0) or thinner (steps < 0) by a pixel a side per step, at GLYPH_HEIGHT scale."""
    if steps == 0:
        return ink
    grey = Image.fromarray(np.clip(ink * 255, 0, 255).astype(np.uint8))
    kind = ImageFilter.MaxFilter if steps > 0 else ImageFilter.MinFilter
    out = np.asarray(grey.filter(kind(2 * abs(steps) + 1)), np.float32) / 255
    # A hairline font would vanish under a thinner pen; it keeps its own.
    return out if out.sum() > 0.5 * ink.sum() else ink


def writer_drawings(
    writer: Writer, *, seed: int = 0, clean_per_digit: int = 20, messy_per_digit: int = 4,
) -> list[WriterDrawing]:
    """A writer's drawings: per digit, ``clean_per_digit`` on the page's canvas (its three colour
    styles in turn) and ``messy_per_digit`` of each messy variant."""
    drawings = []
    for digit, glyph in enumerate(glyphs(writer.path)):
        # Seeded per writer and digit, so adding a writer or a digit leaves the others' bytes alone.
        rng = np.random.default_rng([seed, zlib.crc32(writer.name.encode()), digit])
        for index in range(clean_per_digit):
            style = CLEAN_STYLES[index % len(CLEAN_STYLES)]
            url = draw(handwrite(glyph, rng), style, rng, canvas=CANVAS)
            drawings.append(WriterDrawing(url, digit, writer.name, style))
        for variant in MESSY_VARIANTS:
            for _ in range(messy_per_digit):
                url = draw(handwrite(glyph, rng), variant, rng)
                drawings.append(WriterDrawing(url, digit, writer.name, variant))
    return drawings
