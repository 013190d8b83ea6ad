"""Dataset files read and written without Flask: npz, the product's zip, Quick, Draw!'s ndjson and npy.

A reader checks its whole file first (``check``: structure, size, labels; cheap, nothing
decoded that need not be), so a truncated or mislabelled file is refused before anything is
stored, then yields :class:`Item` one at a time, holding at most a chunk of the file in memory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

IMPORT_FORMATS = ("npz", "zip", "quickdraw-ndjson", "quickdraw-npy")
IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
READ_ROWS = 1024
# The pad's canvas (webapp/static/js/canvas.js): 320 px, black ink 1/14 of its width on white paper.
CANVAS = 320
PEN = CANVAS / 14
# Quick, Draw!'s simplified data: ink fitted into 0..255, strokes simplified with RDP at 2.0.
QUICKDRAW_SCALE = 255
RDP_EPSILON = 2.0
MAX_STROKES = 200
MAX_POINTS = 20_000
MAX_LINE_BYTES = 1 << 20
UNKNOWN_COUNTRY = "ZZ"  # CLDR's "unknown region": Inkling does not know where anyone is


class FormatError(ValueError):
    """A file that is not what its format says (truncated, malformed, or with a label the set lacks)."""


@dataclass(frozen=True)
class Item:
    """One drawing read from a file: 28x28 uint8 pixels (white on black), its class, and what to store."""

    pixels: bytes
    label: str
    image: bytes | None = None  # the image to store; None: a PNG of the pixels
    holdout: bool | None = None  # None: decided as for any confirmation
    strokes: list | None = None  # Quick, Draw! strokes [[x...], [y...]] when the file had them


def gray_png(pixels: bytes, size: int = IMAGE_SIZE) -> bytes:
    """A ``size``-square 8-bit grayscale PNG of ``pixels``, written directly: a tenth of Pillow's time
    for a 28x28 image, which is most of an import's CPU."""
    rows = b"".join(b"\0" + pixels[start:start + size] for start in range(0, size * size, size))
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)),
                     _chunk(b"IDAT", zlib.compress(rows, 6)), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _label(value, classes: Sequence[str], where: str) -> str:
    """A class name from a name or an index into ``classes``."""
    text = str(value)
    if text in classes:
        return text
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(classes):
        return classes[int(value)]
    raise FormatError(f"{where}: label {text[:40]!r} is not one of this label set's classes ({', '.join(classes)})")


class NpyReader:
    """Quick, Draw!'s numpy_bitmap: one class, (N, 784) uint8, white on black; memory-mapped."""

    def __init__(self, path: Path, *, label: str, classes: Sequence[str]):
        self.label = _label(label, classes, Path(path).name)
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FormatError(f"{Path(path).name} is not a complete .npy file: {exc}") from None
        if self.array.dtype != np.uint8 or self.array.ndim != 2 or self.array.shape[1] != PIXELS:
            raise FormatError(f"a quickdraw-npy file holds (N, 784) uint8 bitmaps, not {self.array.shape} "
                              f"{self.array.dtype}")

    def check(self) -> int:
        return len(self.array)

    def __iter__(self) -> Iterator[Item]:
        for start in range(0, len(self.array), READ_ROWS):
            block = np.ascontiguousarray(self.array[start:start + READ_ROWS])
            for row in block:
                yield Item(row.tobytes(), self.label)


class NpzReader:
    """An MNIST-style .npz (the product's export): ``x`` (N, 28, 28) uint8, ``y``, optional ``holdout``."""

    def __init__(self, path: Path, *, classes: Sequence[str]):
        self.classes = classes
        try:
            self.zip = zipfile.ZipFile(path)
            self.y = self._small("y.npy")
            self.holdout = self._small("holdout.npy") if "holdout.npy" in self.zip.namelist() else None
            with self.zip.open("x.npy") as member:
                self.shape, _, self.dtype = _npy_header(member)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
            raise FormatError(f"not a complete .npz with x and y: {exc}") from None
        if self.dtype != np.uint8 or self.shape[1:] not in ((IMAGE_SIZE, IMAGE_SIZE), (PIXELS,)):
            raise FormatError(f"x must be (N, 28, 28) uint8, not {self.shape} {self.dtype}")
        if self.y.shape != self.shape[:1] or (self.holdout is not None and self.holdout.shape != self.y.shape):
            raise FormatError(f"x holds {self.shape[0]} drawings but y {self.y.shape}")

    def _small(self, name: str) -> np.ndarray:
        with self.zip.open(name) as member:
            return np.lib.format.read_array(member, allow_pickle=False)

    def check(self) -> int:
        for index, value in enumerate(self.y):
            _label(value.item(), self.classes, f"y[{index}]")
        # Reading x to its end checks its CRC: a damaged archive is refused before anything is stored.
        try:
            with self.zip.open("x.npy") as member:
                _npy_header(member)
                size = 0
                while block := member.read(1 << 20):
                    size += len(block)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise FormatError(f"x.npy is damaged: {exc}") from None
        if size != self.shape[0] * PIXELS:
            raise FormatError(f"x.npy holds {size} bytes of pixels, not {self.shape[0]} drawings")
        return int(self.shape[0])

    def __iter__(self) -> Iterator[Item]:
        with self.zip.open("x.npy") as member:
            _npy_header(member)
            for start in range(0, self.shape[0], READ_ROWS):
                count = min(READ_ROWS, self.shape[0] - start)
                block = member.read(count * PIXELS)
                for offset in range(count):
                    index = start + offset
                    holdout = None if self.holdout is None else bool(self.holdout[index])
                    yield Item(block[offset * PIXELS:(offset + 1) * PIXELS],
                               _label(self.y[index].item(), self.classes, f"y[{index}]"), holdout=holdout)


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _npy_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version not in _HEADER_READERS:
        raise ValueError(f"unsupported .npy version {version}")
    shape, fortran, dtype = _HEADER_READERS[version](member)
    if fortran:
        raise ValueError("Fortran-ordered arrays are not supported")
    return shape, fortran, dtype


class ZipReader:
    """The product's own zip export: ``<label>/<id>.png`` and manifest.csv (label, holdout, path)."""

    def __init__(self, path: Path, *, classes: Sequence[str]):
        self.classes = classes
        try:
            self.zip = zipfile.ZipFile(path)
            self.names = set(self.zip.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise FormatError(f"not a complete zip archive: {exc}") from None
        if "manifest.csv" not in self.names:
            raise FormatError("the zip has no manifest.csv: it is not a dataset export")

    def _rows(self) -> Iterator[dict]:
        with self.zip.open("manifest.csv") as member:
            reader = csv.DictReader(io.TextIOWrapper(member, encoding="utf-8", newline=""))
            if not {"label", "path"} <= set(reader.fieldnames or ()):
                raise FormatError("manifest.csv needs label and path columns")
            yield from reader

    def check(self) -> int:
        count = 0
        try:
            for count, row in enumerate(self._rows(), start=1):
                _label(row["label"], self.classes, f"manifest.csv row {count}")
                if row["path"] not in self.names:
                    raise FormatError(f"manifest.csv row {count} names {row['path'][:80]!r}, which is not in the zip")
            if (bad := self.zip.testzip()) is not None:
                raise FormatError(f"{bad} is damaged")
        except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise FormatError(f"the zip is damaged: {exc}") from None
        return count

    def __iter__(self) -> Iterator[Item]:
        for index, row in enumerate(self._rows(), start=1):
            png = self.zip.read(row["path"])
            try:
                with Image.open(io.BytesIO(png)) as image:
                    pixels = image.convert("L").tobytes() if image.size == (IMAGE_SIZE, IMAGE_SIZE) else b""
            except (OSError, ValueError) as exc:
                raise FormatError(f"{row['path']} is not a readable image: {exc}") from None
            if len(pixels) != PIXELS:
                raise FormatError(f"{row['path']} is not a 28x28 image")
            holdout = row.get("holdout")
            yield Item(pixels, _label(row["label"], self.classes, f"manifest.csv row {index}"), image=png,
                       holdout=None if holdout in (None, "") else holdout == "1")


class NdjsonReader:
    """Quick, Draw! ndjson (raw or simplified), one file or a zip of them (as the export writes)."""

    def __init__(self, path: Path, *, classes: Sequence[str], render):
        self.path, self.classes, self.render = Path(path), classes, render
        try:
            self.zip = zipfile.ZipFile(path) if zipfile.is_zipfile(path) else None
        except (zipfile.BadZipFile, OSError) as exc:
            raise FormatError(f"not a complete zip archive: {exc}") from None

    def _lines(self) -> Iterator[tuple[str, bytes]]:
        members = [name for name in self.zip.namelist() if name.endswith(".ndjson")] if self.zip else [None]
        for name in members:
            with (self.zip.open(name) if name else open(self.path, "rb")) as handle:
                where = name or self.path.name
                for number, line in enumerate(handle, start=1):
                    if not line.endswith(b"\n"):
                        raise FormatError(f"{where} line {number} is cut short: the file is truncated")
                    if line.strip():
                        yield f"{where} line {number}", line

    def _parse(self, where: str, line: bytes) -> tuple[str, list]:
        if len(line) > MAX_LINE_BYTES:
            raise FormatError(f"{where} is longer than {MAX_LINE_BYTES:,} bytes")
        try:
            record = json.loads(line)
        except ValueError:
            raise FormatError(f"{where} is not JSON") from None
        if not isinstance(record, dict) or "word" not in record or "drawing" not in record:
            raise FormatError(f"{where} needs 'word' and 'drawing'")
        return _label(record["word"], self.classes, where), check_strokes(record["drawing"], where)

    def check(self) -> int:
        count = 0
        try:
            for where, line in self._lines():
                self._parse(where, line)
                count += 1
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise FormatError(f"the file is damaged: {exc}") from None
        return count

    def __iter__(self) -> Iterator[Item]:
        for where, line in self._lines():
            label, strokes = self._parse(where, line)
            png = render_strokes(strokes)
            yield Item(self.render(png, where), label, image=png, strokes=strokes)


def check_strokes(drawing, where: str) -> list[list[list[float]]]:
    """Quick, Draw! strokes ``[[x...], [y...](, [t...])]``, checked: finite numbers, matching lengths."""
    if not isinstance(drawing, list) or not 0 < len(drawing) <= MAX_STROKES:
        raise FormatError(f"{where}: 'drawing' must be a list of 1 to {MAX_STROKES} strokes")
    points = 0
    for stroke in drawing:
        if not (isinstance(stroke, list) and len(stroke) in (2, 3)
                and all(isinstance(axis, list) and len(axis) == len(stroke[0]) > 0 for axis in stroke)):
            raise FormatError(f"{where}: each stroke is [[x...], [y...]] with as many x as y")
        for axis in stroke:
            if not all(type(value) in (int, float) and math.isfinite(value) for value in axis):
                raise FormatError(f"{where}: stroke coordinates must be finite numbers")
        points += len(stroke[0])
    if points > MAX_POINTS:
        raise FormatError(f"{where}: more than {MAX_POINTS:,} points")
    return drawing


def render_strokes(strokes: list) -> bytes:
    """Strokes drawn as the pad draws them (black round-capped ink on a white 320 px canvas), as a PNG."""
    xs = [value for stroke in strokes for value in stroke[0]]
    ys = [value for stroke in strokes for value in stroke[1]]
    left, top = min(xs), min(ys)
    span = max(max(xs) - left, max(ys) - top, 1e-9)
    scale = (CANVAS - 4 * PEN) / span
    offset_x = (CANVAS - (max(xs) - left) * scale) / 2
    offset_y = (CANVAS - (max(ys) - top) * scale) / 2
    image = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(image)
    radius = PEN / 2
    for stroke in strokes:
        points = [(offset_x + (x - left) * scale, offset_y + (y - top) * scale) for x, y in zip(stroke[0], stroke[1])]
        if len(points) > 1:
            draw.line(points, fill=0, width=round(PEN), joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def simplified_strokes(strokes: list) -> list[list[list[int]]]:
    """Quick, Draw!'s simplification: the ink's box moved to (0, 0) and fitted into 0..255 keeping its
    aspect, then each stroke simplified by Ramer-Douglas-Peucker with epsilon 2.0."""
    from simplification.cutil import simplify_coords

    xs = [value for stroke in strokes for value in stroke[0]]
    ys = [value for stroke in strokes for value in stroke[1]]
    left, top = min(xs), min(ys)
    span = max(max(xs) - left, max(ys) - top)
    scale = QUICKDRAW_SCALE / span if span > 0 else 1.0
    simplified = []
    for stroke in strokes:
        line = np.column_stack(((np.asarray(stroke[0], float) - left) * scale,
                                (np.asarray(stroke[1], float) - top) * scale))
        kept = np.asarray(simplify_coords(line, RDP_EPSILON)) if len(line) > 2 else line
        kept = np.rint(kept).astype(int)
        simplified.append([kept[:, 0].tolist(), kept[:, 1].tolist()])
    return simplified


def quickdraw_record(*, word: str, key_id: str, moment: datetime, recognized: bool, strokes: list) -> dict:
    """One line of Quick, Draw!'s simplified ndjson."""
    return {"word": word, "countrycode": UNKNOWN_COUNTRY, "timestamp": moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
            "recognized": recognized, "key_id": key_id, "drawing": simplified_strokes(strokes)}


def canvas_strokes(strokes: list) -> list:
    """The pad's strokes (``{"x": [...], "y": [...], "t": [...]}`` each) as Quick, Draw!'s ``[[x...], [y...]]``."""
    return [[list(stroke["x"]), list(stroke["y"])] if isinstance(stroke, dict) else stroke for stroke in strokes]
