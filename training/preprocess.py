"""The one preprocessing path: an uploaded drawing in, an MNIST-like 28x28 digit out.

Serving calls :func:`preprocess` on every upload; training reads the 28x28 uint8 pixels it
stored, through :func:`to_model_input`, exactly as serving feeds them. NumPy and Pillow only.

The steps follow MNIST's own normalisation: find the ink (whatever the polarity, colour or
transparency), drop specks away from the digit, crop to the ink, bring the stroke width into
MNIST's range, scale the longer side to 20 px keeping the aspect ratio, and centre the
centre of mass in a 28x28 field.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import struct
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops, UnidentifiedImageError

from training import IMAGE_SIZE

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}

MAX_PIXELS = 4_000_000  # ~2000x2000; decoding stays under ~16 MB of RGBA
MAX_SIDE = 4096
MIN_SIDE = 8
MAX_ASPECT = 10

DIGIT_BOX = 20  # MNIST fits the digit in a 20x20 box ...
FIELD_CENTRE = IMAGE_SIZE / 2  # ... and puts its centre of mass at (14, 14)
WORK_BOX = 4 * DIGIT_BOX  # stroke width is measured and corrected at this size
# Stroke width of MNIST digits at WORK_BOX scale (5th-95th percentile: 2.1-4.3 px at 20 px).
STROKE_RANGE = (8.0, 17.0)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The chunks a PNG's pixels decode from. Everything else (text, colour profiles, EXIF, private
# chunks, bytes after IEND) is dropped before Pillow reads it, so none of it can inflate into
# memory, and an upload that carried any of it is stored re-encoded, without it.
PNG_PIXEL_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})
PNG_ANIMATION_CHUNKS = frozenset({b"acTL", b"fcTL", b"fdAT"})

_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)\Z", re.S | re.I)
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}\Z")


class PreprocessError(ValueError):
    """An upload that cannot become a digit; ``status`` and ``code`` suit an HTTP error."""

    status = 400
    code = "invalid_image"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidEncoding(PreprocessError):
    status, code = 400, "invalid_encoding"


class UnsupportedImage(PreprocessError):
    status, code = 415, "unsupported_image"


class ImageTooLarge(PreprocessError):
    status, code = 413, "image_too_large"


class EmptyDrawing(PreprocessError):
    status, code = 422, "empty_drawing"


@dataclass(frozen=True)
class Upload:
    """An upload as it will be stored, and what it is: a bare PNG as sent, anything else re-encoded."""

    data: bytes
    mime: str
    width: int
    height: int


@dataclass(frozen=True)
class Preprocessed:
    """A drawing normalised like MNIST: ``pixels`` is (28, 28) uint8, white digit on black."""

    pixels: np.ndarray
    upload: Upload
    _preview: list = field(default_factory=list, repr=False, compare=False)

    @property
    def array(self) -> np.ndarray:
        return to_model_input(self.pixels)[0, :, :, 0]

    @property
    def preview_png(self) -> bytes:
        if not self._preview:
            buffer = io.BytesIO()
            Image.fromarray(self.pixels).save(buffer, format="PNG")
            self._preview.append(buffer.getvalue())
        return self._preview[0]

    @property
    def preview_data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.preview_png).decode("ascii")


def to_model_input(pixels: np.ndarray) -> np.ndarray:
    """(28, 28) or (N, 28, 28) uint8 pixels -> (N, 28, 28, 1) float32 in [0, 1], what the networks take."""
    pixels = np.asarray(pixels)
    if pixels.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected (..., 28, 28) pixels, got {pixels.shape}")
    return (pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1).astype(np.float32)) / np.float32(255)


def preprocess(payload: bytes | str, *, max_bytes: int | None = None) -> Preprocessed:
    """Turn an upload (image bytes, a ``data:`` URL or bare base64) into an MNIST-like digit.

    Raises a :class:`PreprocessError` subclass for anything that is not a usable drawing.
    """
    upload, image = open_upload(payload, max_bytes=max_bytes)
    return Preprocessed(pixels=_normalise(_digit_ink(*_ink_signal(image))), upload=upload)


def normalise_ink(ink: np.ndarray) -> np.ndarray:
    """Ink already found (float32 in [0, 1], white on black, any size) -> 28x28 uint8 pixels.

    The second half of :func:`preprocess`, for drawings made in code (training.synth), so they
    are cropped, stroke-corrected, scaled and centred exactly as uploads are.
    """
    return _normalise(np.asarray(ink, dtype=np.float32))


def decode_payload(payload: bytes | str, *, max_bytes: int | None = None) -> tuple[bytes, str | None]:
    """Return the image bytes of a payload and the MIME type it declared, if any.

    ``max_bytes`` is the deployment's limit on an upload (the web app passes its
    MAX_IMAGE_BYTES); None sets no byte limit, for images the caller made itself. The limits
    on pixels and sides hold either way.
    """
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = bytes(payload)
        if not payload.startswith(b"data:"):
            if max_bytes is not None and len(payload) > max_bytes:
                raise ImageTooLarge(f"the image is {len(payload):,} bytes; the limit is {max_bytes:,}")
            return payload, None
        try:
            payload = payload.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidEncoding("the data: URL is not ASCII") from None
    if not isinstance(payload, str):
        raise InvalidEncoding("the image must be a string (a data: URL or base64)")
    # base64 grows data by 4/3; refuse before decoding anything oversized.
    if max_bytes is not None and len(payload) > max_bytes * 4 // 3 + 256:
        raise ImageTooLarge(f"the image is larger than the {max_bytes:,}-byte limit")
    declared = None
    text = payload.strip()
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text)
        if not match:
            raise InvalidEncoding("malformed data: URL; expected data:image/png;base64,...")
        params = [p.strip().lower() for p in match["params"].split(";") if p.strip()]
        if "base64" not in params:
            raise InvalidEncoding("the data: URL must be base64-encoded (data:image/png;base64,...)")
        declared = match["mime"].strip().lower() or None
        declared = MIME_ALIASES.get(declared, declared)
        if declared is not None and declared not in FORMATS.values():
            raise UnsupportedImage(f"{declared} is not accepted; send PNG, JPEG or WebP")
        text = match["data"]
    raw = _strict_b64decode(text)
    if not raw:
        raise InvalidEncoding("the image is empty")
    if max_bytes is not None and len(raw) > max_bytes:
        raise ImageTooLarge(f"the image is {len(raw):,} bytes; the limit is {max_bytes:,}")
    return raw, declared


def _strict_b64decode(text: str) -> bytes:
    data = text.encode("ascii", "replace")
    if not _BASE64.match(data) or len(data) % 4:
        raise InvalidEncoding("the image is not valid base64")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEncoding("the image is not valid base64") from None
    # Only the canonical encoding is accepted, so no bytes hide in non-zero padding bits.
    if base64.b64encode(raw) != data:
        raise InvalidEncoding("the image is not canonical base64")
    return raw


def open_upload(payload: bytes | str, *, max_bytes: int | None = None) -> tuple[Upload, Image.Image]:
    """Decode and check an upload; the pixels are decoded only once its header passes."""
    raw, declared = decode_payload(payload, max_bytes=max_bytes)
    readable = _png_pixel_chunks(raw) if raw.startswith(PNG_SIGNATURE) else raw
    try:
        image = Image.open(io.BytesIO(readable), formats=list(FORMATS))
    except UnidentifiedImageError:
        raise UnsupportedImage("the data is not a PNG, JPEG or WebP image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning, if made an error
        raise ImageTooLarge("the image declares too many pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnsupportedImage(f"the image could not be read: {exc}") from None
    mime = FORMATS[image.format]
    if declared is not None and declared != mime:
        raise UnsupportedImage(f"the data URL says {declared} but the data is {mime}")
    width, height = image.size
    _check_size(width, height)
    if getattr(image, "is_animated", False) or getattr(image, "n_frames", 1) > 1:
        raise UnsupportedImage("animated images are not accepted")
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge("the image declares too many pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnsupportedImage(f"the image is corrupt or truncated: {exc}") from None
    if readable != raw or mime != "image/png":
        # Only a bare PNG is kept as sent. Anything else may carry what its sender did not mean
        # to publish (a phone photo's EXIF location, an ICC or XMP packet, a comment) or a
        # trailer (an HTML polyglot), and is served back to others: store its pixels alone,
        # decoded as the networks read them, losslessly.
        raw, mime = pixels_png(image), "image/png"
    return Upload(data=raw, mime=mime, width=width, height=height), image


def pixels_png(image: Image.Image) -> bytes:
    """A PNG of ``image``'s pixels and nothing else (Pillow would carry over its ICC profile)."""
    clean = image.convert("RGB") if image.mode == "CMYK" else image.copy()
    clean.info = {key: value for key, value in image.info.items() if key == "transparency"}
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG")
    return buffer.getvalue()


def _check_size(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise UnsupportedImage(f"the image is {width}x{height}; each side must be at least {MIN_SIDE} px")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise UnsupportedImage(f"the image is {width}x{height}; no drawing canvas is that narrow")
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ImageTooLarge(
            f"the image is {width}x{height}; at most {MAX_SIDE} px a side and {MAX_PIXELS:,} pixels"
        )


def _png_pixel_chunks(raw: bytes) -> bytes:
    """The PNG cut down to the chunks its pixels decode from, checked from its header first.

    Refuses broken framing, animation, and sizes out of bounds before Pillow allocates anything.
    """
    kept, offset = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while True:
        if offset + 12 > len(raw):
            raise UnsupportedImage("the PNG is truncated: it has no end chunk")
        length, kind = struct.unpack(">I4s", raw[offset:offset + 8])
        end = offset + 12 + length
        if end > len(raw):
            raise UnsupportedImage("the PNG is truncated or a chunk's length is wrong")
        if offset == len(PNG_SIGNATURE):
            if kind != b"IHDR" or length != 13:
                raise UnsupportedImage("the PNG does not start with its header chunk")
            _check_size(*struct.unpack(">II", raw[offset + 8:offset + 16]))
        if kind in PNG_ANIMATION_CHUNKS:
            raise UnsupportedImage("animated images are not accepted")
        if kind == b"IDAT" and kept[1][17] == 3 and not any(chunk[4:8] == b"PLTE" for chunk in kept):
            # Pillow reads a palette image without its palette, then cannot write it out again.
            raise UnsupportedImage("the PNG is a palette image without a palette")
        if kind in PNG_PIXEL_CHUNKS:
            kept.append(raw[offset:end])
        offset = end
        if kind == b"IEND":
            return b"".join(kept)


def _grid_cell(width: int, height: int) -> int:
    """The side in pixels of the coarse grid's cells (about 32 a side) that parts are found on."""
    return max(1, math.ceil(max(width, height) / 32))


def _inked_cells(signal: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """The grid cells around the non-zero pixels of ``signal`` (a canvas of ``size``), one more
    on each side, cut out: the image and its top-left corner on the canvas.

    Everywhere else the signal, and so the ink, is 0: what follows reads a few cells instead
    of the whole canvas and gets the same numbers. The cut starts on a cell boundary and ends
    on one or at the canvas's edge, so each cell is reduced over the same pixels.
    """
    box = signal.getbbox()
    if box is None:
        raise EmptyDrawing("nothing is drawn: the image is blank")
    (width, height), cell = size, _grid_cell(*size)
    left, top = max(box[0] // cell - 1, 0) * cell, max(box[1] // cell - 1, 0) * cell
    right = min((-(-box[2] // cell) + 1) * cell, width)
    bottom = min((-(-box[3] // cell) + 1) * cell, height)
    return signal.crop((left, top, right, bottom)), (left, top)


def _ink_signal(image: Image.Image) -> tuple[Image.Image, tuple[int, int], tuple[int, int]]:
    """An 8-bit map of how far each pixel is from the paper (0 is paper, 255 the strongest ink),
    cut to the cells around the ink (:func:`_inked_cells`): the map, its corner and the canvas size.

    Pillow's C operations do the per-pixel work, which keeps a 600x300 canvas near a millisecond.
    """
    size = image.size
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8))
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 250:
            histogram = alpha.histogram()
            if sum(histogram[128:]) < 0.5 * rgba.width * rgba.height:
                # A canvas that was never filled: whatever is opaque is ink, in any colour.
                return *_inked_cells(alpha, size), size
            # Mostly opaque with transparent margins: flatten onto the paper's own colour.
            pixels = np.asarray(rgba)
            paper = np.median(pixels[pixels[..., 3] > 127][:, :3], axis=0)
            backdrop = Image.new("RGBA", rgba.size, tuple(int(c) for c in paper) + (255,))
            image = Image.alpha_composite(backdrop, rgba)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = size
    # The border's four strips alone go to NumPy, not the whole canvas.
    border = np.concatenate([np.asarray(rgb.crop(strip)).reshape(-1, 3) for strip in (
        (0, 0, width, 2), (0, height - 2, width, height), (0, 0, 2, height), (width - 2, 0, width, height))])
    # Ink is whatever differs from the paper, taken as the commonest colour of the border;
    # that serves either polarity, coloured ink and grey paper alike.
    paper = tuple(int(c) for c in np.median(border, axis=0))
    if paper == (255, 255, 255):  # white paper, the commonest: the distance is the negative
        distance = ImageChops.invert(rgb)
    elif paper == (0, 0, 0):
        distance = rgb
    else:
        distance = ImageChops.difference(rgb, Image.new("RGB", size, paper))
    difference, corner = _inked_cells(distance, size)
    red, green, blue = difference.split()
    return ImageChops.lighter(ImageChops.lighter(red, green), blue), corner, size


def _ink_curve(signal: Image.Image) -> list[int]:
    """A 256-entry table mapping the signal to ink: noise floor to 0, the stroke's core to 255.

    The count of 0s (paper) never matters, so a cut-out of the signal gives the same table.
    """
    histogram = np.asarray(signal.histogram(), dtype=np.int64)
    present = np.flatnonzero(histogram)
    peak = int(present[-1]) if present.size else 0
    if peak < 24:
        raise EmptyDrawing("nothing is drawn: the image is blank")
    strong = histogram.copy()
    strong[: peak // 2 + 1] = 0
    cumulative = np.cumsum(strong)
    core = int(np.searchsorted(cumulative, 0.75 * cumulative[-1])) if cumulative[-1] > 3 else peak
    core = max(core, 1)
    # JPEG ringing and paper grain sit well below the stroke's core.
    floor = 0.2 * core
    levels = np.clip((np.arange(256) - floor) / max(core - floor, 1e-3), 0, 1)
    return np.rint(levels * 255).astype(np.int64).tolist()


def _digit_ink(signal: Image.Image, corner: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The ink of the digit, float32 in [0, 1], cropped to it, with stray specks removed.

    ``signal`` is the part of a canvas of ``size`` at ``corner`` outside which it is 0
    (:func:`_ink_signal`); the ink's histogram and grid come out as for the whole canvas.
    Connected parts are found on a coarse grid (about 32 cells a side); a part is kept if
    it is heavy or lies near the main part, so a 5's detached bar stays and a dot goes.
    """
    ink = signal.point(_ink_curve(signal))
    (width, height), cell = size, _grid_cell(*size)
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    mass = np.zeros((rows, cols), np.float32)
    reduced = np.asarray(ink.reduce(cell), dtype=np.float32)
    row0, col0 = corner[1] // cell, corner[0] // cell
    mass[row0:row0 + reduced.shape[0], col0:col0 + reduced.shape[1]] = reduced
    occupied = mass > 2
    labels = _connected_components(occupied)
    count = int(labels.max())
    if count == 0:
        raise EmptyDrawing("nothing is drawn: the image is blank")
    masses = np.bincount(labels.ravel(), weights=mass.ravel(), minlength=count + 1)[1:]
    keep, (top, bottom, left, right) = _parts_to_keep(masses, _part_boxes(labels, count))
    # Cells at the edge of the kept box may hold ink of the neighbouring cell: widen by one.
    y0, x0 = max(top - 1, 0) * cell, max(left - 1, 0) * cell
    y1, x1 = min((bottom + 2) * cell, height), min((right + 2) * cell, width)
    crop = np.asarray(ink.crop((x0 - corner[0], y0 - corner[1], x1 - corner[0], y1 - corner[1])),
                      dtype=np.float32) / 255
    if len(keep) < count:
        dropped = ~np.isin(labels, [index + 1 for index in keep]) & occupied
        cells = np.repeat(np.repeat(dropped, cell, axis=0), cell, axis=1)[y0:y1, x0:x1]
        # Dropped parts touch no kept cell (else they would be one part), so this spares the digit.
        crop[cells] = 0
    return crop


def _part_boxes(labels: np.ndarray, count: int) -> list[tuple[int, int, int, int]]:
    """Each part's bounding box on the grid, (top, bottom, left, right) inclusive, for parts 1..count."""
    rows, cols = labels.shape
    ys, xs = np.nonzero(labels)
    parts = labels[ys, xs] - 1
    tops, lefts = np.full(count, rows), np.full(count, cols)
    bottoms, rights = np.full(count, -1), np.full(count, -1)
    np.minimum.at(tops, parts, ys)
    np.maximum.at(bottoms, parts, ys)
    np.minimum.at(lefts, parts, xs)
    np.maximum.at(rights, parts, xs)
    return list(zip(tops.tolist(), bottoms.tolist(), lefts.tolist(), rights.tolist()))


def _parts_to_keep(masses: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> tuple[set[int], tuple[int, ...]]:
    """The parts that make the digit (indexes into ``boxes``), and the box around them.

    Grown from the heaviest part: a part joins if it is heavy or near the box so far, and the
    box grows with it, until no part joins.
    """
    main = int(np.argmax(masses))
    keep = {main}
    top, bottom, left, right = boxes[main]
    changed = True
    while changed:
        changed = False
        margin = max(1.0, 0.2 * max(bottom - top + 1, right - left + 1))
        for index in np.argsort(-masses):
            index = int(index)
            if index in keep:
                continue
            y0, y1, x0, x1 = boxes[index]
            near = (y1 >= top - margin and y0 <= bottom + margin
                    and x1 >= left - margin and x0 <= right + margin)
            if near or masses[index] >= 0.35 * masses[main]:
                keep.add(index)
                top, bottom = min(top, y0), max(bottom, y1)
                left, right = min(left, x0), max(right, x1)
                changed = True
    return keep, (top, bottom, left, right)


def _connected_components(occupied: np.ndarray) -> np.ndarray:
    """8-connected component labels (0 = empty, parts numbered 1..n) of a small grid.

    Union-find over horizontal runs rather than cells: a digit is a few dozen runs, so
    this costs a fraction of a millisecond where per-cell passes cost several.
    """
    rows, cols = occupied.shape
    framed = np.zeros((rows, cols + 2), np.int8)  # an empty column either side (np.pad is slow on small grids)
    framed[:, 1:-1] = occupied
    edges = np.diff(framed, axis=1)
    run_rows, run_starts = np.nonzero(edges == 1)
    _, run_ends = np.nonzero(edges == -1)  # exclusive; same order as the starts
    parent = list(range(len(run_rows)))

    def find(run: int) -> int:
        while parent[run] != run:
            parent[run] = parent[parent[run]]
            run = parent[run]
        return run

    previous: list[int] = []
    current: list[int] = []
    row_of = run_rows.tolist()
    starts, ends = run_starts.tolist(), run_ends.tolist()
    for run, row in enumerate(row_of):
        if current and row_of[current[0]] != row:
            previous = current if row_of[current[0]] == row - 1 else []
            current = []
        elif not current and previous and row_of[previous[0]] != row - 1:
            previous = []
        for other in previous:
            # Runs in adjacent rows touch, diagonals included, when they overlap by a cell's slack.
            if starts[other] <= ends[run] and starts[run] <= ends[other]:
                a, b = find(run), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        current.append(run)
    labels = np.zeros((rows, cols), np.int64)
    numbers: dict[int, int] = {}
    for run, row in enumerate(row_of):
        labels[row, starts[run]:ends[run]] = numbers.setdefault(find(run), len(numbers) + 1)
    return labels


def _crop(ink: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(ink.max(axis=1) > 0)
    cols = np.flatnonzero(ink.max(axis=0) > 0)
    if rows.size == 0:
        raise EmptyDrawing("nothing is drawn: the image is blank")
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _resize(ink: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longer side is ``box`` px, keeping the aspect ratio, with area averaging."""
    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32)).resize(size, resample), dtype=np.float32)


def _normalise(ink: np.ndarray) -> np.ndarray:
    work = _resize(_crop(ink), WORK_BOX)
    # A hairline shrunk this far turns faint grey; restore full strength before measuring it.
    values = work[work > 0.05]
    if values.size:
        core = float(np.percentile(values, 90))
        if core < 0.9:
            work = np.clip(work / max(core, 0.05), 0, 1)
    work = _fix_stroke_width(work)
    digit = np.clip(_resize(_crop(work), DIGIT_BOX), 0, 1)
    total = float(digit.sum())
    if total <= 0:
        raise EmptyDrawing("nothing is drawn: the image is blank")
    ys, xs = np.indices(digit.shape)
    top = int(round(FIELD_CENTRE - float((ys * digit).sum()) / total))
    left = int(round(FIELD_CENTRE - float((xs * digit).sum()) / total))
    field_ = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    # MNIST lets a lopsided digit's far edge fall off the field rather than move its centre.
    y0, x0 = max(top, 0), max(left, 0)
    y1 = min(top + digit.shape[0], IMAGE_SIZE)
    x1 = min(left + digit.shape[1], IMAGE_SIZE)
    field_[y0:y1, x0:x1] = digit[y0 - top:y1 - top, x0 - left:x1 - left]
    return np.rint(field_ * 255).astype(np.uint8)


def _stroke_width(work: np.ndarray) -> float:
    solid = work > 0.5
    area = int(solid.sum())
    if area == 0:
        return 0.0
    inner = solid.copy()
    inner[1:-1, 1:-1] &= solid[:-2, 1:-1] & solid[2:, 1:-1] & solid[1:-1, :-2] & solid[1:-1, 2:]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    edge = area - int(inner.sum())
    return 2.0 * area / max(edge, 1)


def _fix_stroke_width(work: np.ndarray) -> np.ndarray:
    """Thicken hairlines and thin marker strokes into MNIST's range; leave the rest alone."""
    width = _stroke_width(work)
    low, high = STROKE_RANGE
    if 0 < width < low:
        steps, grow = int(round((low + 1 - width) / 2)), True
    elif width > high:
        steps, grow = int(round((width - high + 1) / 2)), False
    else:
        return work
    steps = min(steps, 8)
    pad = steps + 1
    # Pad so thickening has room, and thinning does not eat strokes that touch the edge.
    out = np.pad(work, pad, mode="constant" if grow else "edge")
    for _ in range(steps):
        out = _filter3x3(out, np.maximum if grow else np.minimum)
    return out[pad:-pad, pad:-pad] if not grow else out


def _filter3x3(values: np.ndarray, reduce) -> np.ndarray:
    """The maximum (or minimum) of each pixel's 3x3 neighbourhood, the image's edge repeated outside.

    Taken along rows, then along columns: the same numbers as the nine shifted copies of an
    edge-padded image, in four operations. A repeated edge pixel never changes its own value,
    so the edges need no padding.
    """
    out = values.copy()
    reduce(out[:, 1:], values[:, :-1], out=out[:, 1:])
    reduce(out[:, :-1], values[:, 1:], out=out[:, :-1])
    across = out.copy()
    reduce(out[1:], across[:-1], out=out[1:])
    reduce(out[:-1], across[1:], out=out[:-1])
    return out
